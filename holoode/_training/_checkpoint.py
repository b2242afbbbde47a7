"""Checkpoints: a JSON header line, then Equinox's serialisation of the arrays."""

import hashlib
import io
import json
import os
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu

from ._config import bookkeeping


FORMAT = "holoode-checkpoint-2"
FILENAME = "checkpoint.eqx"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupted, or from another run."""


def _leaf_specs(tree) -> list[list]:
    return [
        [list(a.shape), str(a.dtype)]
        for a in jtu.tree_leaves(eqx.filter(tree, eqx.is_array))
    ]


def save(path, *, model, opt_state, key, position: dict, config) -> None:
    """Write a checkpoint atomically: to `path.tmp`, then renamed over `path`, so
    an interruption leaves either the old file or the new one, never half of one.

    `position` holds the data position (`epoch`, `batch`: the next batch to run),
    the step count and the skip counters."""
    tree = (model, opt_state, jr.key_data(key))
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    payload = buffer.getvalue()
    header = {
        "format": FORMAT,
        "fingerprint": config.fingerprint(),
        "config": config.to_dict(),
        "position": position,
        "leaves": _leaf_specs(tree),
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    header["header_sha256"] = _header_digest(header)
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(
            e.errno,
            f"Cannot write the checkpoint {str(path)!r}: {e.strerror or e}. Free disk "
            "space or make the run directory writable, then resume with --resume "
            "(the previous checkpoint, if any, is intact).",
        ) from e


def _header_digest(header: dict) -> str:
    """SHA-256 of the header's fields (all but the digest itself), so that a change
    to the step counter or the data position is caught like one in the arrays."""
    fields = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _differences(saved: dict, config) -> list[str]:
    current = json.loads(json.dumps(config.to_dict()))  # tuples as lists, as saved
    keys = sorted(set(saved) | set(current))
    return [
        f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
        for k in keys
        if k not in bookkeeping(config) and saved.get(k) != current.get(k)
    ]


def load(path, *, model, opt_state, key, config):
    """Read a checkpoint written by `save` for the same config, into the
    structure of `(model, opt_state, key)`. Returns `(model, opt_state, key,
    position)`; raises `CheckpointError` naming the file and the problem."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"No checkpoint at {str(path)!r}: nothing to resume. Start the run "
            "without --resume (resume=False), or point --run-dir at the run."
        )
    raw = path.read_bytes()
    newline = raw.find(b"\n")
    try:
        header = json.loads(raw[:newline]) if newline > 0 else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if isinstance(header, dict) and header.get("format") == "holoode-checkpoint-1":
        raise CheckpointError(
            f"Checkpoint {str(path)!r} was written by an earlier version of holoode "
            "whose header carries no checksum, so it cannot be verified. Resume it "
            "with that version, or delete it to start afresh."
        )
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupted or not a holoode checkpoint (its "
            "header cannot be read). Delete it to start afresh."
        )
    if header.get("header_sha256") != _header_digest(header):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupted: its header (step counter, data "
            "position, configuration) does not match its checksum. Delete it to "
            "start afresh."
        )
    payload = raw[newline + 1 :]
    if (
        len(payload) != header["payload_bytes"]
        or hashlib.sha256(payload).hexdigest() != header["payload_sha256"]
    ):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupted: {len(payload)} bytes of data "
            f"where {header['payload_bytes']} were written (truncated or altered). "
            "Delete it to start afresh."
        )
    if header["fingerprint"] != config.fingerprint():
        diff = _differences(header["config"], config)
        raise CheckpointError(
            f"Checkpoint {str(path)!r} belongs to a different run configuration; "
            f"differences: {'; '.join(diff) or 'unknown'}. Resume with the "
            "checkpoint's configuration (its config.json) or start a new --run-dir."
        )
    like = (model, opt_state, jr.key_data(key))
    if header["leaves"] != _leaf_specs(like):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds arrays of other shapes or dtypes than "
            f"this model and optimiser (checkpoint {header['leaves']}, now "
            f"{_leaf_specs(like)})."
        )
    model, opt_state, key_data = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    key = jr.wrap_key_data(jnp.asarray(key_data), impl=jax.random.key_impl(key))
    return model, opt_state, key, header["position"]
