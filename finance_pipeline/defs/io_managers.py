"""Parquet storage for intermediate DataFrames: a local folder, or S3 when a bucket is set.

Pickles are avoided on purpose: Parquet keeps integer money columns typed and can be read
by any tool an auditor or analyst has.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource

from finance_pipeline import settings


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores each (asset, partition) as ``<root>/<asset path>/<partition>.parquet``."""

    base_dir: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "finance-pipeline/storage"
    s3: S3Resource = S3Resource()

    def _relpath(self, context: dg.InputContext | dg.OutputContext) -> str:
        key = "/".join(context.asset_key.path)
        part = context.asset_partition_key if context.has_asset_partitions else "__all__"
        return f"{key}/{part}.parquet"

    def _local(self, rel: str) -> Path:
        return Path(self.base_dir or settings.default_storage_dir()) / rel

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: ParquetIOManager stores pandas DataFrames, "
                f"got {type(obj).__name__}"
            )
        buf = io.BytesIO()
        obj.to_parquet(buf, index=False, engine="pyarrow")
        rel = self._relpath(context)
        if self.s3_bucket:
            key = f"{self.s3_prefix.strip('/')}/{rel}"
            self.s3.get_client().put_object(Bucket=self.s3_bucket, Key=key, Body=buf.getvalue())
            uri = f"s3://{self.s3_bucket}/{key}"
        else:
            path = self._local(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".parquet.tmp")
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, path)  # readers never see a half-written file
            uri = str(path)
        context.add_output_metadata({"storage": dg.MetadataValue.path(uri), "rows": len(obj)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        rel = self._relpath(context)
        if self.s3_bucket:
            key = f"{self.s3_prefix.strip('/')}/{rel}"
            body = self.s3.get_client().get_object(Bucket=self.s3_bucket, Key=key)["Body"].read()
            return pd.read_parquet(io.BytesIO(body), engine="pyarrow")
        return pd.read_parquet(self._local(rel), engine="pyarrow")
