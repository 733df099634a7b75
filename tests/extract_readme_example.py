#!/usr/bin/env python3
"""Extracts the C++ example that follows the '<!-- example: compiled and run by the tests -->'
marker in README.md, so the test suite builds and runs exactly what the README shows."""
import sys

src, dst = sys.argv[1], sys.argv[2]
lines = open(src, encoding="utf-8").read().splitlines()
try:
    start = next(i for i, l in enumerate(lines) if "<!-- example: compiled and run by the tests -->" in l)
    begin = next(i for i in range(start, len(lines)) if lines[i].strip() == "```cpp")
    end = next(i for i in range(begin + 1, len(lines)) if lines[i].strip() == "```")
except StopIteration:
    sys.exit(f"{src}: no ```cpp block after the example marker")
with open(dst, "w", encoding="utf-8") as f:
    f.write(f"// Generated from {src} by tests/extract_readme_example.py; edit the README instead.\n")
    f.write("\n".join(lines[begin + 1:end]) + "\n")
