"""Storage for intermediate results: a local folder, or S3 when a bucket is set.

DataFrames are Parquet (pickles are avoided on purpose: Parquet keeps integer money columns
typed and any analyst's tool can read it), as is a Parquet file a step wrote itself
(``ParquetFile``: a day too large to hold whole); dicts such as the reconciliation report are
stored as their canonical JSON bytes, exactly as they would be published.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.memory import release_unused
from finance_pipeline.settings import Settings

_SUFFIXES = (".parquet", ".json")


def release_unused_memory() -> None:
    """Give memory that earlier steps freed back to the OS before a step loads its inputs.

    Steps run one after another in one process (``materialize_day``); Arrow's allocator and
    glibc's keep freed pages for reuse, each for itself, so a day's proof step started with
    the extract's and the pulls' gigabytes still counted in its RSS. (Which allocator Arrow
    uses is chosen once, when the definitions load: ``memory.use_lean_allocators``.)
    """
    release_unused()


# The (run, step) whose inputs memory was last released for.
_RELEASED_FOR: list[tuple[str, str] | None] = [None]


def _release_before_step(context: dg.InputContext) -> None:
    """``release_unused_memory`` before a step's first input, not before each: a full garbage
    collection and heap trim cost about 0.25 s once GX and Dagster are loaded, and a proof
    step has six inputs (most only opened here, read later)."""
    try:
        step = (context.step_context.run_id, context.step_context.step.key)
    except dg.DagsterInvariantViolationError:  # an input context built without a step
        step = None
    if step is None or step != _RELEASED_FOR[0]:
        _RELEASED_FOR[0] = step
        release_unused_memory()


# Input metadata asking for a StoredFrame instead of the DataFrame itself.
AS_SOURCE = {"finance_pipeline/load": "source"}
# The read buffer of a stored frame read in pieces (``StoredFrame.batches``).
READ_BUFFER_BYTES = 4 << 20


class StoredFrame:
    """A stored DataFrame that a step reads when it needs it, and only the columns it needs
    (``export.prove.FrameSource``); the step can let it go before its next piece of work.

    ``file`` is the Parquet file as it was when the step loaded its inputs: an open local file
    (a re-materialization replaces the path, not the file already open) or the bytes of the S3
    object. Every read sees the same version.
    """

    def __init__(self, name: str, file: Any):
        self.name = name
        self._file = file  # a seekable binary file object

    def read(self, columns: Any = None, *, without: Any = ()) -> pd.DataFrame:
        """These of ``columns`` that the frame has (all for None), less those in ``without``."""
        import pyarrow.parquet as pq

        if columns is not None or without:
            self._file.seek(0)
            names = pq.read_schema(self._file).names
            keep = names if columns is None else [c for c in columns if c in names]
            columns = [c for c in keep if c not in set(without)]
        self._file.seek(0)
        return pd.read_parquet(self._file, columns=columns, engine="pyarrow")

    def batches(self, rows: int, columns: Any = None) -> Iterator[pd.DataFrame]:
        """The frame ``read`` gives, in consecutive pieces of at most ``rows`` rows (one
        Parquet row group in memory at a time), each with the frame's dtypes."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._file.seek(0)
        # Read as a stream, a few MB at a time: by default Arrow fetches a row group's whole
        # column chunks first (at five million records the pull's texts took 0.5 GB beside
        # the piece being read, 0.1 GB this way).
        stored = pq.ParquetFile(self._file, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)
        names = stored.schema_arrow.names if columns is None else [c for c in columns if c in
                                                                   stored.schema_arrow.names]
        schema = pa.schema([stored.schema_arrow.field(c) for c in names], metadata=stored.schema_arrow.metadata)
        for batch in stored.iter_batches(batch_size=rows, columns=names):
            # The file's pandas metadata gives the dtypes read_parquet gives; the index is
            # positional in each piece.
            yield pa.Table.from_batches([batch], schema=schema).to_pandas().reset_index(drop=True)

    def sha256(self) -> str:
        """The digest of the stored bytes this source reads (what the gate verdicts name)."""
        digest = hashlib.sha256()
        self._file.seek(0)
        for chunk in iter(lambda: self._file.read(1 << 22), b""):
            digest.update(chunk)
        self._file.seek(0)
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"StoredFrame({self.name!r})"


@dataclass(frozen=True)
class ParquetFile:
    """A frame its step wrote to a Parquet file itself, a piece at a time, because the day may
    not fit in memory whole (the ledger extract): stored as it is, then removed. Steps read it
    back as the frame it holds."""

    path: Path
    rows: int


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores each (asset, partition) as ``<root>/<asset path>/<partition>.parquet|.json``."""

    base_dir: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "finance-pipeline/storage"
    s3: S3Resource

    def _stem(self, context: dg.InputContext | dg.OutputContext) -> str:
        key = "/".join(context.asset_key.path)
        part = context.asset_partition_key if context.has_asset_partitions else "__all__"
        return f"{key}/{part}"

    def _s3_key(self, rel: str) -> str:
        return f"{self.s3_prefix.strip('/')}/{rel}"

    def _local(self, rel: str) -> Path:
        return Path(self.base_dir or Settings().storage_dir) / rel

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if isinstance(obj, ParquetFile):
            self._store_file(context, obj)
            return
        if isinstance(obj, pd.DataFrame):
            buf = io.BytesIO()
            obj.to_parquet(buf, index=False, engine="pyarrow")
            data, suffix = buf.getvalue(), ".parquet"
        elif isinstance(obj, dict):
            data, suffix = canonical_bytes(obj), ".json"
        else:
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the storage IO manager keeps DataFrames "
                f"(Parquet) and dicts (canonical JSON), got {type(obj).__name__}"
            )
        rel = self._stem(context) + suffix
        if self.s3_bucket:
            key = self._s3_key(rel)
            self.s3.get_client().put_object(Bucket=self.s3_bucket, Key=key, Body=data)
            uri = f"s3://{self.s3_bucket}/{key}"
        else:
            path = self._local(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # readers never see a half-written file
            uri = str(path)
        meta: dict[str, Any] = {"storage": dg.MetadataValue.path(uri)}
        if isinstance(obj, pd.DataFrame):
            meta["rows"] = len(obj)
        context.add_output_metadata(meta)

    def _store_file(self, context: dg.OutputContext, obj: ParquetFile) -> None:
        """Store a step's own Parquet file without reading it into memory (S3: a multipart
        upload), then remove it; readers never see a part of it."""
        rel = self._stem(context) + ".parquet"
        try:
            if self.s3_bucket:
                key = self._s3_key(rel)
                self.s3.get_client().upload_file(str(obj.path), self.s3_bucket, key)
                uri = f"s3://{self.s3_bucket}/{key}"
            else:
                path = self._local(rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                try:
                    shutil.move(obj.path, tmp)  # a rename when both are on one file system
                    os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
                uri = str(path)
        finally:
            Path(obj.path).unlink(missing_ok=True)
        context.add_output_metadata({"storage": dg.MetadataValue.path(uri), "rows": obj.rows})

    def _source(self, context: dg.InputContext, stem: str) -> StoredFrame:
        rel = stem + ".parquet"
        part = context.asset_partition_key if context.has_asset_partitions else ""
        name = f"{context.asset_key.to_user_string()} {part}".strip()
        if self.s3_bucket:
            data = self._read(rel)  # the compressed file: a fraction of the frame it decodes to
            if data is None:
                self._missing(context)
            return StoredFrame(name, io.BytesIO(data))
        path = self._local(rel)
        try:
            return StoredFrame(name, open(path, "rb"))  # noqa: SIM115 - lives as long as the source
        except FileNotFoundError:
            self._missing(context)

    @staticmethod
    def _missing(context: dg.InputContext):
        raise FileNotFoundError(
            f"no stored value for {context.asset_key.to_user_string()} partition "
            f"{context.asset_partition_key if context.has_asset_partitions else '-'}: materialize it first"
        )

    def _read(self, rel: str) -> bytes | None:
        if self.s3_bucket:
            client = self.s3.get_client()
            try:
                return client.get_object(Bucket=self.s3_bucket, Key=self._s3_key(rel))["Body"].read()
            except client.exceptions.NoSuchKey:
                return None
        path = self._local(rel)
        return path.read_bytes() if path.exists() else None

    def load_input(self, context: dg.InputContext) -> Any:
        _release_before_step(context)
        stem = self._stem(context)
        if (context.definition_metadata or {}).get("finance_pipeline/load") == "source":
            return self._source(context, stem)
        for suffix in _SUFFIXES:
            data = self._read(stem + suffix)
            if data is not None:
                if suffix == ".json":
                    return json.loads(data)
                return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        self._missing(context)
