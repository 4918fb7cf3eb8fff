"""Compile the translation catalogs: locale/<lang>/LC_MESSAGES/*.po → .mo.

    python -m requests_app.catalogs            # every catalog under locale/
    python -m requests_app.catalogs PATH.po …  # just these

The .mo files are build output (not in git): ``make run``/``make test`` and the
Dockerfile run this. It needs only the standard library — not GNU gettext's
msgfmt, which Django's ``compilemessages`` calls and which neither a fresh Mac
nor the python:slim image has — and no Django settings, so it runs at image
build time without any configuration. Like msgfmt, it leaves out fuzzy and
untranslated entries; tests/test_i18n.py checks there are none, and that the
result reads the same as msgfmt's.
"""

from __future__ import annotations

import ast
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


@dataclass
class Entry:
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    # One string, or one per plural form.
    msgstr: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr)


def _unquote(text: str) -> str:
    # PO strings are C string literals; for the escapes PO files use (\" \\
    # \n \t …) Python's literal syntax reads them the same way.
    value = ast.literal_eval(text)
    if not isinstance(value, str):
        raise ValueError(f"not a string: {text!r}")
    return value


def parse_po(text: str) -> list[Entry]:
    """The entries of a .po file, the header (msgid "") included."""
    entries: list[Entry] = []
    entry = Entry()
    # Which string a continuation line ("…") adds to: (name, plural index).
    current: tuple[str, int] | None = None
    seen_keyword = False

    def finish() -> None:
        nonlocal entry, current, seen_keyword
        if seen_keyword:
            entries.append(entry)
        entry, current, seen_keyword = Entry(), None, False

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
            if line.startswith("|"):  # an obsolete entry's previous msgid
                continue
        if not line:
            finish()
            continue
        if line.startswith("#"):
            if seen_keyword and not obsolete:
                finish()
            if line.startswith("#,"):
                entry.flags |= {flag.strip() for flag in line[2:].split(",")}
            continue
        try:
            if line.startswith('"'):
                if current is None:
                    raise ValueError("continuation without a keyword")
                name, index = current
                if name == "msgstr":
                    entry.msgstr[index] += _unquote(line)
                else:
                    setattr(entry, name, getattr(entry, name) + _unquote(line))
                continue
            keyword, _, rest = line.partition(" ")
            value = _unquote(rest.strip())
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"line {number}: cannot read {raw!r}") from exc
        if keyword in ("msgctxt", "msgid") and (entry.msgstr or (keyword == "msgid" and entry.msgid)):
            finish()  # a new entry without a blank line before it
        seen_keyword = True
        entry.obsolete = entry.obsolete or obsolete
        if keyword in ("msgctxt", "msgid", "msgid_plural"):
            setattr(entry, keyword, value)
            current = (keyword, 0)
        elif keyword == "msgstr":
            entry.msgstr = [value]
            current = ("msgstr", 0)
        elif keyword.startswith("msgstr[") and keyword.endswith("]"):
            index = int(keyword[7:-1])
            entry.msgstr.extend([""] * (index + 1 - len(entry.msgstr)))
            entry.msgstr[index] = value
            current = ("msgstr", index)
        else:
            raise ValueError(f"line {number}: unknown keyword {keyword!r}")
    finish()
    return entries


def mo_bytes(entries: list[Entry]) -> bytes:
    """A GNU .mo file (little-endian, revision 0) of the translated,
    non-fuzzy, non-obsolete entries — what ``msgfmt`` writes, without the
    optional hash table, which readers (Python's gettext included) do not need."""
    catalog: dict[bytes, bytes] = {}
    for entry in entries:
        if entry.obsolete or not entry.translated or (entry.fuzzy and entry.msgid):
            continue
        key = entry.msgid if entry.msgid_plural is None else f"{entry.msgid}\0{entry.msgid_plural}"
        if entry.msgctxt is not None:
            key = f"{entry.msgctxt}\x04{key}"
        catalog[key.encode()] = "\0".join(entry.msgstr).encode()
    keys = sorted(catalog)  # readers binary-search the original strings
    count = len(keys)
    originals_at = 7 * 4
    translations_at = originals_at + count * 8
    data_at = translations_at + count * 8
    table: list[int] = []
    data = b""
    for strings in (keys, [catalog[key] for key in keys]):
        for string in strings:
            table += [len(string), data_at + len(data)]
            data += string + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, originals_at, translations_at, 0, data_at)
    return header + struct.pack(f"<{len(table)}I", *table) + data


def compile_po(po_path: Path) -> Path:
    """Write the .mo next to ``po_path``; return its path."""
    mo_path = po_path.with_suffix(".mo")
    content = mo_bytes(parse_po(po_path.read_text(encoding="utf-8")))
    # Written whole, then moved into place: a server reading the catalog
    # never sees half a file.
    partial = mo_path.with_suffix(".mo.partial")
    partial.write_bytes(content)
    partial.replace(mo_path)
    return mo_path


def main(argv: list[str]) -> int:
    paths = [Path(arg) for arg in argv] or sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po"))
    for po_path in paths:
        print(f"compiled {compile_po(po_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
