"""Legacy staging module (the seed's contract): ``test()``, then ``main(parent, dump, **py_exec_args)``."""
from __future__ import annotations

import os
import shutil


def test() -> bool:
    """The seed called this first to check the module loads and works."""
    return rename_header("column1,column2\n", {"column1": "name"}) == "name,column2\n"


def rename_header(line: str, mapper: dict[str, str]) -> str:
    ending = "\n" if line.endswith("\n") else ""
    return ",".join(mapper.get(n, n) for n in line.rstrip("\n").split(",")) + ending


def main(parent: str, dump: str, mapper: dict[str, str]) -> None:
    """Copy each landed CSV file to the dump with its header columns renamed."""
    os.makedirs(dump, exist_ok=True)
    for name in sorted(os.listdir(parent)):
        source = os.path.join(parent, name)
        if not os.path.isfile(source):
            continue
        with open(source, encoding="utf-8", newline="") as src, \
                open(os.path.join(dump, name), "w", encoding="utf-8", newline="") as dst:
            dst.write(rename_header(src.readline(), mapper))
            shutil.copyfileobj(src, dst)
