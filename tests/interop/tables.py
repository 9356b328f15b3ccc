#!/usr/bin/env python3
"""The official Azure SDK for Python (azure-data-tables) on the same table as the app's own
Tables client, for tests/azure_interop.rs:

  tables.py write CONNECTION_STRING TABLE PARTITION   writes entities, prints them as JSON
  tables.py read CONNECTION_STRING TABLE PARTITION    prints the partition's entities as JSON

Entities are printed as {"RowKey": …, "props": {name: [type, value]}} with the EDM type the SDK
reports, so both sides can compare types as well as values."""

import json
import sys

from azure.data.tables import EdmType, EntityProperty, TableServiceClient

API_VERSION = "2019-02-02"


def typed(value):
    if isinstance(value, EntityProperty):
        kind = value.edm_type.value if hasattr(value.edm_type, "value") else str(value.edm_type)
        return [kind, str(value.value) if kind == "Edm.Int64" else value.value]
    if isinstance(value, bool):
        return ["Edm.Boolean", value]
    if isinstance(value, int):
        return ["Edm.Int32", value]
    if isinstance(value, float):
        return ["Edm.Double", value]
    return ["Edm.String", str(value)]


def table(connection, name):
    service = TableServiceClient.from_connection_string(connection, api_version=API_VERSION)
    return service.get_table_client(name)


def write(client, partition):
    written = [
        {
            "PartitionKey": partition,
            "RowKey": "from-python-1",
            "Name": "O'Brien ✓ \u00e9",
            "Big": EntityProperty(9007199254740993, EdmType.INT64),
            "Ratio": 0.25,
            "Done": True,
        },
        {"PartitionKey": partition, "RowKey": "from-python-2", "Name": "second"},
    ]
    for entity in written:
        client.create_entity(entity)
    return read(client, partition)


def read(client, partition):
    rows = client.query_entities("PartitionKey eq @p", parameters={"p": partition})
    out = []
    for entity in rows:
        props = {k: typed(v) for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}
        out.append({"RowKey": entity["RowKey"], "props": props})
    return sorted(out, key=lambda e: e["RowKey"])


def main(argv):
    if len(argv) != 4 or argv[0] not in ("write", "read"):
        sys.exit(__doc__)
    client = table(argv[1], argv[2])
    result = write(client, argv[3]) if argv[0] == "write" else read(client, argv[3])
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
