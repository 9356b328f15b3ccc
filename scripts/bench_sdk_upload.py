#!/usr/bin/env python3
"""Uploads a file with the official Azure Storage SDK for Python, as a user of File Approver
would: to an upload URL (`url URL FILE`), or, for the benchmark's baseline, to a container of
its own with a connection string (`connection CONNECTION_STRING CONTAINER FILE`). Both use the
SDK's defaults for large files (4 MiB blocks, Put Block + Put Block List above 64 MiB) with the
same concurrency. Prints {"seconds": …} on stdout."""

import json
import os
import sys
import time

from azure.storage.blob import BlobClient, BlobServiceClient

CONCURRENCY = 4


def main(argv):
    if len(argv) == 3 and argv[0] == "url":
        client = BlobClient.from_blob_url(argv[1])
        path = argv[2]
    elif len(argv) == 4 and argv[0] == "connection":
        service = BlobServiceClient.from_connection_string(argv[1])
        container = service.get_container_client(argv[2])
        if not container.exists():
            container.create_container()
        client = container.get_blob_client(os.path.basename(argv[3]))
        path = argv[3]
    else:
        sys.exit(__doc__)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        started = time.perf_counter()
        client.upload_blob(f, length=size, overwrite=True, max_concurrency=CONCURRENCY)
        took = time.perf_counter() - started
    print(json.dumps({"seconds": took, "bytes": size}))


if __name__ == "__main__":
    main(sys.argv[1:])
