"""Signing failures: recognise one in a failed step, and alert with the signers' health.

The proof step fails with a ``SigningError`` (or ``SigningConfigError``) when a key is
missing, unreadable, disabled or unreachable. The alert carries ``check_signers``' diagnosis
per key, so on-call knows which key to fix before re-running the day.
"""

from __future__ import annotations

from typing import Any, Callable

from finance_pipeline.oncall.notify import Alert

SIGNING_FAILURE = "signing_failure"
SIGNING_ERROR_CLASSES = ("SigningError", "SigningConfigError")
PROOF_STEP = "proof_package"


def signing_error_message(error: Any) -> str | None:
    """The message of the first signing error in a (serialized) error chain, else None.

    Duck-typed on ``cls_name``, ``message``, ``cause`` and ``context``, the shape of Dagster's
    SerializableErrorInfo: a step error wraps the user's exception as its cause.
    """
    todo, seen = [error], set()
    while todo:
        err = todo.pop(0)
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if getattr(err, "cls_name", None) in SIGNING_ERROR_CLASSES:
            return (getattr(err, "message", "") or "").strip()
        todo += [getattr(err, "cause", None), getattr(err, "context", None)]
    return None


def signing_health(config_factory: Callable[[], Any]) -> dict[str, Any]:
    """``check_signers`` on the configured keys, as a dict; never raises for a key problem."""
    from finance_pipeline.signing.health import check_signers
    from finance_pipeline.signing.signers import SigningError

    try:
        config = config_factory()
    except SigningError as exc:
        return {"healthy": False, "error": exc.diagnosis, "keys": []}
    try:
        return check_signers(config).to_dict()
    except Exception as exc:  # the alert must still go out with what is known
        return {"healthy": False, "error": f"health check failed: {type(exc).__name__}: {exc}", "keys": []}


def signing_failure_alert(*, run_id: str, job_name: str, partition: str | None, error: str,
                          health: dict[str, Any]) -> Alert:
    broken = [f"{k['key_id']} ({k['role']}): {k['diagnosis']}" for k in health.get("keys", [])
              if not k.get("ok")]
    if health.get("error"):
        verdict = f"signing configuration unusable: {health['error']}"
    elif health.get("healthy"):
        verdict = "every key signs now (transient failure?)"
    else:
        verdict = "; ".join(broken + [health.get("quorum_diagnosis", "")]).strip("; ")
    day = partition or "?"
    summary = (f"proof for {day} not signed (run {run_id} of {job_name}): {error} | signing health: "
               f"{verdict} | after fixing, re-run the day: `finance-pipeline export {day} {day}` "
               "or re-execute the run from failure in the UI")
    return Alert(kind=SIGNING_FAILURE, key=f"{SIGNING_FAILURE}:{run_id}", summary=summary,
                 severity="critical",
                 detail={"run_id": run_id, "job_name": job_name, "partition": partition,
                         "error": error, "signing_health": health})
