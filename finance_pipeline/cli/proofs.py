"""`finance-pipeline verify | prove-entry | verify-entry`: offline checks of proof packages.

Exit status, as `proof-package.md` requires: 0 valid, 1 invalid (the failing check is named),
2 could not run (bad arguments, missing or unreadable files, bad keyring).
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import click

from finance_pipeline.proof.inclusion import InclusionError, prove_entry, verify_entry
from finance_pipeline.proof.keyring import Keyring, KeyringError
from finance_pipeline.proof.package import Package, PackageLoadError, loads_strict
from finance_pipeline.proof.verify import VerifyResult, verify_package

EXIT_VALID, EXIT_INVALID, EXIT_ERROR = 0, 1, 2


def _cannot_run(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(EXIT_ERROR)


KMS_ROLE_TAG = "finance-proof-role"


def build_keyring(keyring_path: str | None, kms: tuple[str, ...] = (), min_signatures: int | None = None) -> Keyring:
    """The trusted keys: a keyring file, or the public keys of the named KMS keys
    (``--kms ARN=ROLE``; without ``=ROLE`` the key's ``finance-proof-role`` tag). Never the keys
    a package names."""
    if bool(keyring_path) == bool(kms):
        _cannot_run("give either --keyring FILE or one or more --kms ARN[=ROLE]")
    try:
        if keyring_path:
            return Keyring.load(keyring_path)
        return _kms_keyring(kms, min_signatures)
    except KeyringError as exc:
        _cannot_run(str(exc))


def _kms_keyring(kms: tuple[str, ...], min_signatures: int | None) -> Keyring:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from cryptography.hazmat.primitives import serialization

    from finance_pipeline.proof.keyring import KeyringKey, QuorumPolicy

    client = boto3.client("kms")
    keys = []
    for item in kms:
        arn, _, role = item.rpartition("=") if "=" in item else (item, "", "")
        try:
            if not role:
                tags = client.list_resource_tags(KeyId=arn).get("Tags", [])
                role = next((t["TagValue"] for t in tags if t["TagKey"] == KMS_ROLE_TAG), "")
                if not role:
                    _cannot_run(f"{arn}: no role given and no '{KMS_ROLE_TAG}' tag on the key; "
                                f"write --kms {arn}=finance-lead")
            der = client.get_public_key(KeyId=arn)["PublicKey"]
        except (BotoCoreError, ClientError) as exc:
            _cannot_run(f"cannot fetch the public key of {arn} from KMS: {exc}")
        pem = serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        keys.append(KeyringKey(key_id=arn, role=role, public_key_pem=pem))
    quorum = QuorumPolicy(min_signatures=min_signatures or len(keys), distinct_roles=True)
    return Keyring(keys=keys, quorum=quorum)


def open_package(location: str, *, previous: bool = False) -> Package:
    """A package folder, ``file://`` or ``s3://`` location (publication.load_package)."""
    from finance_pipeline.publication import load_package

    try:
        # Of a previous package only its statement is needed.
        return load_package(location, require_all=not previous)
    except PackageLoadError as exc:
        _cannot_run(str(exc))
    except OSError as exc:
        _cannot_run(f"{location}: cannot read ({exc.strerror or exc})")
    except Exception as exc:  # noqa: BLE001 - any failure to fetch is "could not run"
        _cannot_run(f"{location}: cannot read the package{' from S3' if location.startswith('s3://') else ''} ({exc})")


def _echo(text: str) -> None:
    """Print text that may quote hostile input (a lone surrogate cannot be written as UTF-8)."""
    click.echo(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def _json(doc: Any) -> str:
    try:
        return json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8").decode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, indent=2, ensure_ascii=True)


def _report(result: VerifyResult, as_json: bool) -> None:
    if as_json:
        click.echo(_json(result.to_dict()))
    else:
        _echo(result.text())


def _could_not_run(exc: BaseException, as_json: bool) -> NoReturn:
    """A failure no check foresaw: exit 2 with what happened, as a JSON verdict with --json."""
    message = f"could not verify: {type(exc).__name__}: {exc}"[:2000]
    if as_json:
        click.echo(_json({"ok": False, "error": message, "checks": []}))
    _cannot_run(message.encode("utf-8", "backslashreplace").decode("utf-8"))


def keyring_option(fn):
    fn = click.option("--min-signatures", type=click.IntRange(1), default=None,
                      help="With --kms: the quorum (default: every named key, distinct roles).")(fn)
    fn = click.option("--kms", "kms", multiple=True, metavar="ARN[=ROLE]",
                      help="Trust the public keys of these KMS keys instead of a keyring file.")(fn)
    return click.option(
        "--keyring", "keyring_path", default=None, metavar="FILE",
        help="Trusted keys and quorum (JSON, see proof-package.md). Keys named by the package are never trusted.",
    )(fn)


@click.command("verify")
@click.argument("path", metavar="PACKAGE")
@keyring_option
@click.option("--previous", "previous_path", metavar="PACKAGE", default=None,
              help="The previous day's package: also check the chain link (statement.previous).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def verify_cmd(path: str, keyring_path: str | None, kms: tuple[str, ...], min_signatures: int | None,
               previous_path: str | None, as_json: bool) -> None:
    """Verify the proof package PACKAGE (a folder or s3://bucket/prefix/) offline.

    Exit 0 valid, 1 invalid (the failed checks are named), 2 could not run.
    """
    keyring = build_keyring(keyring_path, kms, min_signatures)
    pkg = open_package(path)
    prev = open_package(previous_path, previous=True) if previous_path else None
    try:
        result = verify_package(pkg, keyring, previous_package=prev)
    except Exception as exc:  # noqa: BLE001 - every exit is 0, 1 or 2, never a traceback
        _could_not_run(exc, as_json)
    _report(result, as_json)
    raise click.exceptions.Exit(EXIT_VALID if result.ok else EXIT_INVALID)


@click.command("prove-entry")
@click.option("--package", "package_path", required=True, metavar="PACKAGE", help="Package folder.")
@click.option("--journal-id", "journal_id", required=True, help="The entry to prove.")
def prove_entry_cmd(package_path: str, journal_id: str) -> None:
    """Print the inclusion proof (finance-inclusion/1) of one journal entry.

    Exit 0 printed, 1 the entry is not in the package, 2 could not run.
    """
    pkg = open_package(package_path)
    try:
        proof = prove_entry(pkg, journal_id)
    except LookupError as exc:
        click.echo(f"not found: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_INVALID)
    except InclusionError as exc:
        click.echo(f"invalid package: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_INVALID)
    except (ValueError, KeyError, TypeError) as exc:
        click.echo(f"invalid package: proof_package.json is unusable ({exc}); run `verify` on it", err=True)
        raise click.exceptions.Exit(EXIT_INVALID)
    click.echo(json.dumps(proof, indent=2, ensure_ascii=False))


def _read_proof(path: str) -> Any:
    try:
        with open(path, "rb") as fh:
            return loads_strict(fh.read())
    except OSError as exc:
        _cannot_run(f"{path}: cannot read ({exc.strerror or exc})")
    except (ValueError, UnicodeDecodeError) as exc:
        _cannot_run(f"{path}: not a JSON inclusion proof ({exc})")


@click.command("verify-entry")
@click.option("--package", "package_path", required=True, metavar="PACKAGE", help="Package folder.")
@click.option("--proof", "proof_path", required=True, metavar="FILE", help="Inclusion proof JSON.")
@keyring_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_entry_cmd(package_path: str, proof_path: str, keyring_path: str | None, kms: tuple[str, ...],
                     min_signatures: int | None, as_json: bool) -> None:
    """Verify PACKAGE, then the inclusion proof FILE against its signed Merkle root.

    Exit 0 the entry is in the signed ledger, 1 it is not or the package is invalid, 2 could not run.
    """
    keyring = build_keyring(keyring_path, kms, min_signatures)
    proof = _read_proof(proof_path)
    pkg = open_package(package_path)
    try:
        result = verify_package(pkg, keyring)
    except Exception as exc:  # noqa: BLE001 - every exit is 0, 1 or 2, never a traceback
        _could_not_run(exc, as_json)
    if not result.ok:
        if as_json:
            click.echo(_json({"ok": False, "package": result.to_dict(), "inclusion": None}))
        else:
            _echo(result.text())
            click.echo("inclusion proof not checked: the package itself is invalid")
        raise click.exceptions.Exit(EXIT_INVALID)
    try:
        incl = verify_entry(proof, result.statement or {})
    except Exception as exc:  # noqa: BLE001
        _could_not_run(exc, as_json)
    if as_json:
        click.echo(_json({"ok": incl.ok, "package": result.to_dict(),
                          "inclusion": {"ok": incl.ok, "journal_id": incl.journal_id, "detail": incl.detail}}))
    else:
        click.echo(f"package {result.proof_id}: VALID")
        _echo(f"inclusion: {'ok' if incl.ok else 'FAIL'}  {incl.detail}")
    raise click.exceptions.Exit(EXIT_VALID if incl.ok else EXIT_INVALID)


COMMANDS: list[click.Command] = [verify_cmd, prove_entry_cmd, verify_entry_cmd]
