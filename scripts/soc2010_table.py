"""The UK's Standard Occupational Classification 2010 as the pipeline's generic tables.

Reads the ONS's SOC 2010 coding index (ONS_index.xls, version 5.1, August 2016; Open Government
Licence v3.0) and writes
  DIR/soc2010.csv          code, parent, title: 9 major groups (1 digit), 25 sub-major (2),
                           90 minor (3) and 369 unit groups (4), a code's parent its code less
                           the last digit;
  DIR/soc2010_entries.csv  code, text: the index's job titles with their qualifiers
                           ("Accountant, financial (coal mine, qualified)"), one row per
                           distinct (unit group, text); "see" references (no code) left out.
Usage: python3 scripts/soc2010_table.py ONS_index.xls DIR   (xlrd on PYTHONPATH)
"""

import csv
import os
import sys

import xlrd


def cell_text(value):
    """A cell as text: numbers (codes read as floats) without their ".0"."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return " ".join(str(value).split())


def structure(book):
    """(code, parent, title) rows of the 'SOC2010 Structure' sheet, in sheet order."""
    sheet = book.sheet_by_name("SOC2010 Structure")
    rows = []
    for i in range(1, sheet.nrows):
        values = sheet.row_values(i)
        codes = [cell_text(v) for v in values[:4] if cell_text(v)]
        if not codes:
            continue
        if len(codes) != 1 or not codes[0].isdigit():
            sys.exit(f"SOC2010 Structure, row {i + 1}: expected one code in the first four columns, got {codes}")
        code = codes[0]
        rows.append((code, code[:-1], cell_text(values[4])))
    return rows


def entries(book, known):
    """(code, text) rows of the 'SOC2010 Full Index V5' sheet whose SOC 2010 code is a unit group."""
    sheet = book.sheet_by_name("SOC2010 Full Index V5")
    header = [cell_text(h) for h in sheet.row_values(0)]
    col = {name: header.index(name) for name in ("SOC 2010", "INDEXOCC", "IND", "ADD")}
    seen, rows = set(), []
    for i in range(1, sheet.nrows):
        values = sheet.row_values(i)
        code = cell_text(values[col["SOC 2010"]])
        if not code.isdigit():
            continue  # "}}}}": a see-reference to other entries
        if code not in known:
            sys.exit(f"SOC2010 Full Index V5, row {i + 1}: unit group {code} is not in the structure sheet")
        text = " ".join(t for t in (cell_text(values[col[c]]) for c in ("INDEXOCC", "IND", "ADD")) if t)
        if text and (code, text) not in seen:
            seen.add((code, text))
            rows.append((code, text))
    return rows


def write(path, header, rows):
    """Writes `path` through a temporary name, so that no half-written table is left."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    book = xlrd.open_workbook(sys.argv[1])
    tree = structure(book)
    units = {code for code, _, _ in tree if len(code) == 4}
    index = entries(book, units)
    write(os.path.join(sys.argv[2], "soc2010.csv"), ["code", "parent", "title"], tree)
    write(os.path.join(sys.argv[2], "soc2010_entries.csv"), ["code", "text"], index)
    print(f"{len(tree)} codes ({len(units)} unit groups), {len(index)} index entries", file=sys.stderr)


if __name__ == "__main__":
    main()
