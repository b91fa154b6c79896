"""Secret references: ``aws-sm://<secret-id>[#json-key]`` resolved through AWS Secrets Manager.

Configuration values that are credentials (``DATABASE_URL``, ``STRIPE_API_KEY``,
``PAYOUT_API_TOKEN``) may hold a reference instead of the secret itself::

    DATABASE_URL=aws-sm://finance/ledger-database#url
    STRIPE_API_KEY=aws-sm://arn:aws:secretsmanager:eu-west-1:123456789012:secret:finance/stripe-AbCdEf#api_key

The reference is resolved each time :func:`resolve_secret` is called - in practice when a run
starts and its resources are built - never cached across calls, so a rotated secret is picked
up by the next run without a redeploy or a code change. Any other value is returned as is,
which keeps plain values (local development, tests, the embedded defaults) working.

The client goes to the ``endpoint_url`` and ``region`` it is given (``AWS_ENDPOINT_URL`` and
``AWS_REGION`` as the settings read them: LocalStack, moto, a VPC endpoint); left out, boto3's
own defaults apply. Credentials come from boto3's usual chain (task role, IRSA, env).
Error messages name the secret and the key, never a secret value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SCHEME = "aws-sm://"


class SecretResolutionError(RuntimeError):
    """A secret reference that could not be turned into a value."""


@dataclass(frozen=True)
class SecretRef:
    secret_id: str
    json_key: str | None = None

    def __str__(self) -> str:
        return f"{SCHEME}{self.secret_id}" + (f"#{self.json_key}" if self.json_key is not None else "")


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_reference(value: str) -> SecretRef:
    """``aws-sm://<secret-id>[#json-key]`` -> SecretRef; the id may be a name or a full ARN."""
    if not is_reference(value):
        raise SecretResolutionError(f"not a secret reference (expected {SCHEME}<secret-id>[#json-key])")
    rest = value[len(SCHEME):]
    secret_id, sep, key = rest.partition("#")
    if not secret_id:
        raise SecretResolutionError(f"{SCHEME}...: the secret id is empty; write {SCHEME}<secret-id>[#json-key]")
    if sep and not key:
        raise SecretResolutionError(f"{SCHEME}{secret_id}#: the JSON key after '#' is empty; drop the '#' "
                                    "to use the whole secret string")
    return SecretRef(secret_id, key if sep else None)


def secretsmanager_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    import boto3

    return boto3.client("secretsmanager", endpoint_url=endpoint_url or None, region_name=region or None)


def fetch(ref: SecretRef, client: Any | None = None, *, endpoint_url: str | None = None,
          region: str | None = None) -> str:
    """The current value of ``ref`` (AWSCURRENT), one GetSecretValue call (on ``client``, else
    a client on ``endpoint_url`` and ``region``)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = client or secretsmanager_client(endpoint_url, region)
    try:
        response = client.get_secret_value(SecretId=ref.secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise SecretResolutionError(
            f"{SCHEME}{ref.secret_id}: Secrets Manager answered {code}; check the secret id and that "
            "this role may secretsmanager:GetSecretValue on it (and kms:Decrypt on its key)"
        ) from None
    except BotoCoreError as exc:
        raise SecretResolutionError(f"{SCHEME}{ref.secret_id}: cannot reach Secrets Manager ({exc})") from None
    if response.get("SecretString") is not None:
        text = response["SecretString"]
    elif response.get("SecretBinary") is not None:
        try:
            text = bytes(response["SecretBinary"]).decode("utf-8")
        except UnicodeDecodeError:
            raise SecretResolutionError(f"{SCHEME}{ref.secret_id}: binary secret is not UTF-8 text") from None
    else:
        raise SecretResolutionError(f"{SCHEME}{ref.secret_id}: the secret has no value")
    if ref.json_key is None:
        return text
    try:
        document = json.loads(text)
    except ValueError:
        raise SecretResolutionError(
            f"{ref}: the secret is not a JSON object, so it has no key {ref.json_key!r}; "
            f"drop '#{ref.json_key}' to use the whole string"
        ) from None
    if not isinstance(document, dict) or ref.json_key not in document:
        keys = sorted(document) if isinstance(document, dict) else []
        raise SecretResolutionError(f"{ref}: the secret has no key {ref.json_key!r} (keys: {', '.join(keys) or 'none'})")
    value = document[ref.json_key]
    if not isinstance(value, str):
        if isinstance(value, (dict, list)) or value is None:
            raise SecretResolutionError(f"{ref}: the value is not a string or number")
        value = json.dumps(value)
    return value


def resolve_secret(value: Any, client: Any | None = None, *, endpoint_url: str | None = None,
                   region: str | None = None) -> Any:
    """``value`` with an ``aws-sm://`` reference replaced by the secret; anything else unchanged."""
    if not is_reference(value):
        return value
    return fetch(parse_reference(value), client, endpoint_url=endpoint_url, region=region)


__all__ = ["SCHEME", "SecretRef", "SecretResolutionError", "fetch", "is_reference", "parse_reference",
           "resolve_secret", "secretsmanager_client"]
