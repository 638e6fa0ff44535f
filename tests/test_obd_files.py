"""towerjax.datasets.obd_files.export_obd on a tiny OBD-layout folder (no download)."""

import csv

import pytest

from towerjax import cli
from towerjax.datasets import DatasetFileError
from towerjax.datasets.obd_files import OBD_FILES, export_obd

HEADER = (
    ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,"
    "user-item_affinity_0,user-item_affinity_1\n"
)
BTS = HEADER + (
    "0,2019-11-24 00:00:17+00:00,2,1,0,0.5,u1,m,0.0,1.0\n"
    "1,2019-11-24 00:00:19+00:00,0,3,1,0.25,u2,f,0.0,2.0\n"
    "2,2019-11-24 00:01:04+00:00,1,2,0,0.125,u1,f,3.0,0.0\n"
)
RANDOM = HEADER + (
    "0,2019-11-24 00:00:10+00:00,1,1,1,0.3333333333333333,u1,m,0.0,0.0\n"
    "1,2019-11-24 00:00:11+00:00,0,2,0,0.3333333333333333,u2,m,0.5,0.0\n"
    "2,2019-11-24 00:00:12+00:00,2,3,0,0.3333333333333333,u3,f,0.0,0.0\n"
    "3,2019-11-24 00:00:13+00:00,1,2,1,0.3333333333333333,u1,f,0.0,0.0\n"
)
BTS_ITEMS = ",item_id,item_feature_0,item_feature_1\n0,0,-0.5,aaa\n1,1,0.25,bbb\n2,2,1.5,aaa\n"
# The same items with other hash labels (as in the OBD files): aaa is zzz here, bbb is yyy.
RANDOM_ITEMS = ",item_id,item_feature_0,item_feature_1\n0,0,-0.5,zzz\n1,1,0.25,yyy\n2,2,1.5,zzz\n"


def obd_folder(root, random_items=RANDOM_ITEMS):
    for policy, log, items in (("bts", BTS, BTS_ITEMS), ("random", RANDOM, random_items)):
        folder = root / policy / "all"
        folder.mkdir(parents=True)
        (folder / "all.csv").write_text(log)
        (folder / "item_context.csv").write_text(items)
    return root


def read(path):
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_export_obd_writes_logs_items_and_readme(tmp_path):
    out = tmp_path / "out" / "obd"
    paths = export_obd(out, wheel=obd_folder(tmp_path / "obd"))
    assert sorted(p.name for p in paths.values()) == sorted(OBD_FILES)
    assert all(p.parent == out for p in paths.values())

    log_header = [
        "user_feature_0", "user_feature_1", "user-item_affinity_0", "user-item_affinity_1",
        "item_id", "position", "reward", "pscore",
    ]  # fmt: skip
    header, bts = read(out / "bts.csv")
    assert header == log_header and len(bts) == 3
    assert bts[1] == {
        "user_feature_0": "u2",
        "user_feature_1": "f",
        "user-item_affinity_0": "0.0",
        "user-item_affinity_1": "2.0",
        "item_id": "0",
        "position": "3",
        "reward": "1",
        "pscore": "0.25",
    }
    header, random = read(out / "random.csv")
    assert header == log_header and len(random) == 4
    assert [r["item_id"] for r in random] == ["1", "0", "2", "1"]
    assert [r["position"] for r in random] == ["1", "2", "3", "2"]
    assert [r["user_feature_0"] for r in random] == ["u1", "u2", "u3", "u1"]
    assert float(random[0]["pscore"]) == 0.3333333333333333

    # One item table, bts's labels: the random log's items were matched to it.
    header, items = read(out / "items.csv")
    assert header == ["item_id", "item_feature_0", "item_feature_1"] and len(items) == 3
    assert [(r["item_id"], r["item_feature_0"], r["item_feature_1"]) for r in items] == [
        ("0", "-0.5", "aaa"),
        ("1", "0.25", "bbb"),
        ("2", "1.5", "aaa"),
    ]
    assert {r["item_id"] for r in random} <= {r["item_id"] for r in items}

    readme = (out / "README.txt").read_text()
    for name in ("bts.csv", "random.csv", "items.csv", "towerjax train", "--randomized", str(out)):
        assert name in readme

    export_obd(out, wheel=tmp_path / "obd")  # rewriting replaces the files
    assert len(read(out / "random.csv")[1]) == 4


def test_export_obd_refuses_item_tables_that_do_not_match(tmp_path):
    unmatched = ",item_id,item_feature_0,item_feature_1\n0,0,-0.5,zzz\n1,1,0.25,yyy\n2,2,1.5,xxx\n"
    with pytest.raises(DatasetFileError, match=r"item_feature_1.*one to one"):
        export_obd(tmp_path / "out", wheel=obd_folder(tmp_path / "obd", unmatched))
    with pytest.raises(ValueError, match="campaign"):
        export_obd(tmp_path / "out", "kids", wheel=tmp_path / "obd")


def test_data_export_is_for_obd_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["data", "movielens", "--export", str(tmp_path), "--cache-dir", str(tmp_path / "c")])
    assert exit_info.value.code == 2
    assert "argument --export: is for obd only" in capsys.readouterr().err
