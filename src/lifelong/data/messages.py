"""One line per failed Great Expectations check, in words a data engineer would use.

The most telling failures come first (a wrong schema explains most of what follows), and a
check that could not run because its column is missing or mistyped is not repeated.

>>> spec = DatasetSpec(name="d", kind="forecast", loader="d.csv", ranges={"y": (0.0, 1.0)})
>>> check = {"success": False, "result": {"unexpected_count": 2, "partial_unexpected_list": [3.0, -1.0]},
...          "expectation_config": {"type": "expect_column_values_to_be_between",
...                                 "kwargs": {"column": "y", "min_value": 0.0, "max_value": 1.0}}}
>>> describe({"results": [check]}, spec)
['y: 2 values outside [0.0, 1.0] (e.g. 3.0, -1.0)']
"""

from __future__ import annotations

from collections.abc import Iterable

from lifelong.config import DatasetSpec

# the most telling failures first: a wrong schema explains most of what follows
PRIORITY = {
    "expect_table_columns_to_match_set": 0,
    "expect_column_values_to_be_of_type": 1,
    "expect_table_row_count_to_equal": 2,
    "expect_table_row_count_to_be_between": 2,
}


def _examples(result: dict) -> str:
    values = result.get("partial_unexpected_list") or []
    return f" (e.g. {', '.join(repr(v) for v in values[:3])})" if values else ""


def _names(names: Iterable[object], most: int = 10, width: int = 40) -> str:
    """Column names as a list, at most ``most`` of them, each cut at ``width`` characters: a header
    line of a file that is not a batch never fills the log.

    >>> _names(["Price", "x" * 50])
    "['Price', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…']"
    >>> _names(str(i) for i in range(12))
    "['0', '1', '10', '11', '2', '3', '4', '5', '6', '7', ...] (12 in all)"
    """
    shown = sorted(str(n) for n in names)
    cut = [n if len(n) <= width else n[: width - 1] + "…" for n in shown[:most]]
    return str(cut) if len(shown) <= most else f"{str(cut)[:-1]}, ...] ({len(shown)} in all)"


def _describe(check: dict, spec: DatasetSpec) -> str | None:
    """One line for one failed check; None when another message already covers it."""
    config = check.get("expectation_config") or {}
    kind, kw = config.get("type", "?"), config.get("kwargs") or {}
    result = check.get("result") or {}
    column = kw.get("column") or kw.get("column_A") or ""
    count = result.get("unexpected_count")
    if (check.get("exception_info") or {}).get("raised_exception"):
        return None if kind != "expect_table_columns_to_match_set" else "columns could not be checked"
    if kind == "expect_table_columns_to_match_set":
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        parts = []
        if mismatched.get("missing"):
            parts.append(f"missing columns {sorted(mismatched['missing'])}")
        if mismatched.get("unexpected"):
            parts.append(f"unexpected columns {_names(c for c in mismatched['unexpected'] if not c.startswith('__'))}")
        return "; ".join(parts) or "columns do not match"
    if kind == "expect_column_values_to_be_of_type":
        return f"{column}: expected type {kw.get('type_')}, got {result.get('observed_value')}"
    if kind == "expect_table_row_count_to_equal":
        return f"expected {kw.get('value')} rows for the day, got {result.get('observed_value')}"
    if kind == "expect_table_row_count_to_be_between":
        return f"expected at least {kw.get('min_value')} rows, got {result.get('observed_value')}"
    if count is None and "observed_value" not in result and kind.startswith("expect_column_"):
        return None  # the column is missing or of the wrong type: said once, elsewhere
    if kind == "expect_column_values_to_not_be_null":
        return f"{column}: {count} missing values"
    if column == "__row_hash":
        return f"{count} duplicated rows (identical to another row)"
    if column == "__step_s":
        return f"{spec.timestamp}: {count} steps not {spec.frequency} apart{_examples(result)} (seconds)"
    if column == "__grid_s":
        return f"{spec.timestamp}: {count} times off the {spec.frequency} grid{_examples(result)} (seconds past it)"
    if column == "__local_date":
        return f"{spec.timestamp}: {count} rows outside the day {kw.get('value_set')}{_examples(result)}"
    if kind == "expect_column_pair_values_to_be_equal":
        return f"{column}: {count} rows whose date is not their timestamp's local date"
    if kind == "expect_column_values_to_be_unique":
        return f"{column}: {count} duplicate values{_examples(result)}"
    if kind == "expect_column_values_to_be_increasing":
        return f"{column}: not strictly increasing ({count} rows out of order)"
    if kind == "expect_column_unique_value_count_to_be_between":
        return f"{column}: only {result.get('observed_value')} distinct value (flat line)"
    if kind == "expect_column_distinct_values_to_equal_set":
        return f"{column}: labels present {result.get('observed_value')}, expected {kw.get('value_set')}"
    if kind == "expect_column_values_to_be_in_set":
        return f"{column}: {count} values not in {kw.get('value_set')}{_examples(result)}"
    if column.endswith("__len"):
        return f"{column[:-5]}: {count} recordings not of length {spec.signal_length}{_examples(result)}"
    if column.endswith("__nonfinite"):
        return f"{column[:-11]}: {count} recordings with NaN or infinite values"
    if column.endswith("__min") or column.endswith("__max"):
        low, high = spec.ranges.get(column[:-5], (None, None))
        return f"{column[:-5]}: {count} recordings outside [{low}, {high}]{_examples(result)}"
    if kind == "expect_column_values_to_be_between":
        low, high = kw.get("min_value"), kw.get("max_value")
        if column in spec.ranges:
            return f"{column}: {count} values outside [{low}, {high}]{_examples(result)}"
        return f"{column}: {count} non-finite values"
    return f"{kind} failed on {column or 'the table'}"


def describe(result: dict, spec: DatasetSpec) -> list[str]:
    """One line per failed check of a GX validation result (JSON)."""
    failed = [check for check in result.get("results", []) if not check.get("success")]
    failed.sort(key=lambda check: PRIORITY.get((check.get("expectation_config") or {}).get("type"), 9))
    lines: list[str] = []
    for check in failed:
        line = _describe(check, spec)
        if line and line not in lines:
            lines.append(line)
    return lines or ["validation failed"]
