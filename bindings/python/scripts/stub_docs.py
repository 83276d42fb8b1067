"""Copies the compiled module's docstrings into python/kvclient/_native.pyi.

The Rust doc comments (which `help()` shows) are the one source of the
docstrings; the stub gets the same text so editors show it too. Also checks
that every public class and method has an example (a `>>>` line) and every
property a docstring.

    python scripts/stub_docs.py           # rewrite the stub
    python scripts/stub_docs.py --check   # fail if stale or incomplete (CI)

Run with the package installed (scripts/test-python.sh does both).
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import List, Optional

import kvclient._native as native

STUB = Path(__file__).resolve().parents[1] / "python" / "kvclient" / "_native.pyi"
CLASS = re.compile(r"^class (\w+)\b.*:")
DEF = re.compile(r"^(\s+)def (\w+)\(")


def strip_docs(lines: List[str]) -> List[str]:
    """The stub without the docstrings this script added (idempotence)."""
    out: List[str] = []
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if out and out[-1].rstrip().endswith(":") and re.match(r'^r?"""', s):
            # A docstring under a class/def header: skip to its end.
            one_line = s.count('"""') >= 2
            end = i
            if not one_line:
                end += 1
                while '"""' not in lines[end]:
                    end += 1
            i = end + 1
            header = out[-1]
            depth = len(header) - len(header.lstrip())
            nxt = lines[i] if i < len(lines) else ""
            # No deeper-indented body follows: the bare stub had `...`.
            if not (nxt.strip() and len(nxt) - len(nxt.lstrip()) > depth):
                out[-1] = header.rstrip() + " ..."
            continue
        out.append(lines[i])
        i += 1
    return out


def docstring(doc: str, indent: str) -> List[str]:
    prefix = 'r"""' if "\\" in doc else '"""'
    body = doc.strip().split("\n")
    if len(body) == 1:
        return [f"{indent}{prefix}{body[0]}\"\"\""]
    rest = [f"{indent}{b}" if b.strip() else "" for b in body[1:]]
    return [f"{indent}{prefix}{body[0]}", *rest, f'{indent}"""']


def doc_of(cls_name: Optional[str], member: Optional[str]) -> Optional[str]:
    obj = getattr(native, cls_name or "", None)
    if obj is None:
        return None
    if member is not None:
        obj = inspect.getattr_static(obj, member, None)
        if obj is None:
            return None
        if isinstance(obj, staticmethod):
            obj = obj.__func__
    d = getattr(obj, "__doc__", None)
    return d if d and d.strip() else None


def render(lines: List[str]) -> List[str]:
    out: List[str] = []
    cls: Optional[str] = None
    for line in lines:
        m = CLASS.match(line)
        d = DEF.match(line)
        target = None
        if m:
            cls = m.group(1)
            doc = doc_of(cls, None)
            target = (doc, "    ")
        elif d and cls and not d.group(2).startswith("_"):
            doc = doc_of(cls, d.group(2))
            target = (doc, d.group(1) + "    ")
        elif line and not line.startswith((" ", "@", "#")):
            cls = None
        if target and target[0] and line.rstrip().endswith(": ..."):
            out.append(line.rstrip()[: -len(" ...")])
            out.extend(docstring(target[0], target[1]))
        elif target and target[0] and line.rstrip().endswith(":"):
            out.append(line)
            out.extend(docstring(target[0], target[1]))
        else:
            out.append(line)
    return out


def missing_examples() -> List[str]:
    bad: List[str] = []
    for name in sorted(n for n in dir(native) if not n.startswith("_")):
        cls = getattr(native, name)
        if not inspect.isclass(cls):
            continue
        if ">>>" not in (cls.__doc__ or ""):
            bad.append(f"{name}: no example")
        if issubclass(cls, BaseException):
            continue
        for attr, value in vars(cls).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, staticmethod):
                value = value.__func__
            doc = getattr(value, "__doc__", None) or ""
            if callable(value) and ">>>" not in doc:
                bad.append(f"{name}.{attr}: no example")
            elif not doc.strip():
                bad.append(f"{name}.{attr}: no docstring")
    return bad


def main() -> int:
    current = STUB.read_text()
    wanted = "\n".join(render(strip_docs(current.split("\n"))))
    bad = missing_examples()
    for b in bad:
        print(f"stub_docs: {b}", file=sys.stderr)
    if "--check" in sys.argv[1:]:
        if wanted != current:
            print("stub_docs: _native.pyi docstrings are stale: run scripts/stub_docs.py", file=sys.stderr)
            return 1
        return 1 if bad else 0
    STUB.write_text(wanted)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
