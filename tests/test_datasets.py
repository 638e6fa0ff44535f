"""Dataset readers on tiny fixture wheels built here, and the wheel fetch/cache (pip mocked)."""

import hashlib
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from towerjax.datasets import (
    OBP_WHEEL,
    RECBOLE_WHEEL,
    ChecksumError,
    DatasetFileError,
    FetchError,
    WheelSpec,
    _wheel,
    default_cache_dir,
    fetch_wheel,
    load_movielens_100k,
    load_obd,
    obd,
)

# --------------------------------------------------------------------------- fixtures

OBD_ITEMS = """\
,item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3
0,0,-0.5,aaa,xx,p
1,1,0.25,bbb,xx,q
2,2,1.5,aaa,yy,q
"""

OBD_HEADER = (
    ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,"
    "user_feature_2,user_feature_3,user-item_affinity_0,user-item_affinity_1,user-item_affinity_2\n"
)
OBD_BTS = OBD_HEADER + (
    "0,2019-11-24 00:00:17.004101+00:00,2,1,0,0.5,u1,m,c,z,0.0,1.0,0.0\n"
    "1,2019-11-24 00:00:19.715857+00:00,0,3,1,0.25,u2,f,c,z,0.0,0.0,2.0\n"
    "2,2019-11-24 00:01:04.303227+00:00,1,2,0,0.125,u1,f,d,z,3.0,0.0,0.0\n"
    "3,2019-11-24 00:02:00+00:00,2,3,1,1.0,u3,m,c,z,0.0,0.0,0.0\n"
)
OBD_RANDOM = OBD_HEADER + (
    "0,2019-11-24 00:00:10+00:00,1,1,1,0.3333333333333333,u1,m,c,z,0.0,0.0,0.0\n"
    "1,2019-11-24 00:00:11+00:00,0,2,0,0.3333333333333333,u2,m,c,z,0.0,0.0,0.0\n"
)

ML_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n"
    "186\t302\t5\t891717742\n"
    "196\t302\t1\t878887116\n"
)
ML_USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "196\t20\tM\twriter\t85711\n"
    "186\t40\tF\tother\t94043\n"
    "7\t30\tM\tother\t32067\n"
)
ML_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tKolya\t1996\tComedy\n"
    "302\tL.A. Confidential\t1998\tCrime Film-Noir Mystery Thriller\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
    "1412\tLand Before Time III\tV\tAnimation Children's\n"
)


def obd_members(override=()):
    """The fixture wheel's members; ``override`` replaces some (``None`` removes one)."""
    members = {
        "obp/dataset/obd/bts/all/all.csv": OBD_BTS,
        "obp/dataset/obd/bts/all/item_context.csv": OBD_ITEMS,
        "obp/dataset/obd/random/all/all.csv": OBD_RANDOM,
        "obp/dataset/obd/random/all/item_context.csv": OBD_ITEMS,
        "obp/dataset/obd/bts/men/men.csv": OBD_RANDOM,
        "obp/dataset/obd/bts/men/item_context.csv": OBD_ITEMS,
        "obp/__init__.py": "",
    }
    members.update(dict(override))
    return {k: v for k, v in members.items() if v is not None}


def ml_members(**override):
    root = "recbole/dataset_example/ml-100k/ml-100k"
    members = {f"{root}.inter": ML_INTER, f"{root}.user": ML_USER, f"{root}.item": ML_ITEM}
    members.update({f"{root}.{k}": v for k, v in override.items()})
    return {k: v for k, v in members.items() if v is not None}


def make_wheel(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in members.items():
            z.writestr(name, text)
    return path


def extract(wheel: Path, target: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


@pytest.fixture
def obd_wheel(tmp_path):
    return make_wheel(tmp_path / "obp-0.4.1-py3-none-any.whl", obd_members())


@pytest.fixture
def ml_wheel(tmp_path):
    return make_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl", ml_members())


# --------------------------------------------------------------------------- OBD


def test_obd_reads_arrays_with_zero_based_positions(obd_wheel):
    d = load_obd("bts", "all", wheel=obd_wheel)
    assert (d.behavior_policy, d.campaign) == ("bts", "all")
    assert d.n_rounds == 4 and d.n_actions == 3 and d.n_positions == 3
    np.testing.assert_array_equal(d.item_id, [2, 0, 1, 2])
    np.testing.assert_array_equal(d.action, [2, 0, 1, 2])
    np.testing.assert_array_equal(d.position, [0, 2, 1, 2])  # file's 1, 3, 2, 3
    np.testing.assert_array_equal(d.click, [0, 1, 0, 1])
    np.testing.assert_allclose(d.propensity_score, [0.5, 0.25, 0.125, 1.0])
    assert d.timestamp.dtype == np.dtype("datetime64[us]")
    assert d.timestamp[0] == np.datetime64("2019-11-24T00:00:17.004101")
    assert d.timestamp[3] == np.datetime64("2019-11-24T00:02:00")

    # User features: every user_feature_* column one-hot, categories sorted.
    assert d.user_feature_names == (
        "user_feature_0=u1", "user_feature_0=u2", "user_feature_0=u3",
        "user_feature_1=f", "user_feature_1=m",
        "user_feature_2=c", "user_feature_2=d",
        "user_feature_3=z",
    )  # fmt: skip
    np.testing.assert_array_equal(
        d.user_features,
        [
            [1, 0, 0, 0, 1, 1, 0, 1],
            [0, 1, 0, 1, 0, 1, 0, 1],
            [1, 0, 0, 1, 0, 0, 1, 1],
            [0, 0, 1, 0, 1, 1, 0, 1],
        ],
    )
    np.testing.assert_array_equal(d.user_item_affinity, [[0, 1, 0], [0, 0, 2], [3, 0, 0], [0, 0, 0]])

    # Item features: the numeric item_feature_0 kept, the others one-hot.
    assert d.item_feature_names == (
        "item_feature_0",
        "item_feature_1=aaa", "item_feature_1=bbb",
        "item_feature_2=xx", "item_feature_2=yy",
        "item_feature_3=p", "item_feature_3=q",
    )  # fmt: skip
    np.testing.assert_allclose(
        d.item_features,
        [[-0.5, 1, 0, 1, 0, 1, 0], [0.25, 0, 1, 1, 0, 0, 1], [1.5, 1, 0, 0, 1, 0, 1]],
    )
    np.testing.assert_array_equal(d.item_ids, [0, 1, 2])


def test_obd_selects_policy_and_campaign_files(obd_wheel):
    random = load_obd("random", "all", wheel=obd_wheel)
    assert random.n_rounds == 2
    np.testing.assert_array_equal(random.position, [0, 1])
    np.testing.assert_allclose(random.propensity_score, 1 / 3)
    men = load_obd("bts", "men", wheel=obd_wheel)  # the file is men/men.csv
    assert men.campaign == "men" and men.n_rounds == 2
    with pytest.raises(DatasetFileError, match=r"women/women\.csv"):
        load_obd("bts", "women", wheel=obd_wheel)
    with pytest.raises(ValueError, match="behavior_policy"):
        load_obd("greedy", wheel=obd_wheel)
    with pytest.raises(ValueError, match="campaign"):
        load_obd("bts", "kids", wheel=obd_wheel)


def test_obd_to_logged_data_pooled_and_per_position(obd_wheel):
    d = load_obd("bts", "all", wheel=obd_wheel)
    pooled = d.to_logged_data()
    d_u, d_aff = 8, 3
    assert pooled.context.shape == (4, d_u + d_aff + 3)
    np.testing.assert_array_equal(pooled.context[:, -3:], np.eye(3)[[0, 2, 1, 2]])  # slot one-hot
    np.testing.assert_array_equal(pooled.context[:, d_u : d_u + d_aff], d.user_item_affinity)
    np.testing.assert_array_equal(pooled.action, [2, 0, 1, 2])
    np.testing.assert_allclose(pooled.pscore, [0.5, 0.25, 0.125, 1.0])
    np.testing.assert_allclose(pooled.reward, [0, 1, 0, 1])
    np.testing.assert_allclose(pooled.action_context, d.item_features)
    assert len(d.context_feature_names()) == pooled.context.shape[1]
    assert d.context_feature_names()[-1] == "position=2"

    slot2 = d.to_logged_data(position=2, affinity=False)
    assert slot2.context.shape == (2, d_u)
    np.testing.assert_array_equal(slot2.action, [0, 2])
    np.testing.assert_allclose(slot2.pscore, [0.25, 1.0])
    assert d.to_logged_data(position_feature=False).context.shape == (4, d_u + d_aff)
    with pytest.raises(ValueError, match=r"position: expected a slot in \[0, 3\)"):
        d.to_logged_data(position=3)

    feedback = d.to_bandit_feedback()
    assert feedback["n_rounds"] == 4 and feedback["n_actions"] == 3
    np.testing.assert_array_equal(feedback["position"], [0, 2, 1, 2])
    assert feedback["context"].shape == (4, d_u + d_aff)


def test_obd_reads_an_extracted_directory(obd_wheel, tmp_path):
    root = extract(obd_wheel, tmp_path / "extracted")
    from_root = load_obd("bts", "all", wheel=root)
    # A folder laid out as {policy}/{campaign}/..., like the full OBD release.
    from_obd_dir = load_obd("bts", "all", wheel=root / "obp" / "dataset" / "obd")
    for d in (from_root, from_obd_dir):
        np.testing.assert_array_equal(d.position, [0, 2, 1, 2])
        np.testing.assert_allclose(d.item_features[:, 0], [-0.5, 0.25, 1.5])
    with pytest.raises(DatasetFileError, match=r"random/all/all\.csv"):
        load_obd("random", "all", wheel=root / "obp" / "dataset" / "obd" / "bts")


@pytest.mark.parametrize(
    "member, text, match",
    [
        ("bts/all/item_context.csv", None, r"item_context\.csv"),
        ("bts/all/all.csv", OBD_BTS.replace(",0.5,u1", ",1.5,u1"),
         r"all\.csv: column 'propensity_score', row 0 \(line 2\) is '1\.5', expected a value in \(0, 1\]"),
        ("bts/all/all.csv", OBD_BTS.replace(",0.125,", ",,"), r"all\.csv: column 'propensity_score', row 2 \(line 4\)"),
        ("bts/all/all.csv", OBD_BTS.replace("+00:00,0,3,1", "+00:00,7,3,1"),
         r"all\.csv: column 'item_id', row 1 \(line 3\) is 7, which is not in the item table"),
        ("bts/all/all.csv", OBD_BTS.replace("+00:00,2,1,0", "+00:00,2,0,0"), r"column 'position', row 0 .*1-based"),
        ("bts/all/all.csv", OBD_BTS.replace(",u2,f,", ",,f,"), r"all\.csv: column 'user_feature_0', row 1 \(line 3\) is empty"),
        ("bts/all/all.csv", OBD_BTS.replace(",3.0,0.0,0.0", ",3.0,0.0"), r"all\.csv: row 2 \(line 4\) has 12 fields, expected 13"),
        ("bts/all/all.csv", OBD_BTS.replace("propensity_score,", "pscore,"), r"all\.csv: missing column\(s\) \['propensity_score'\]"),
        ("bts/all/item_context.csv", OBD_ITEMS.replace("2,2,1.5", "2,1,1.5"),
         r"item_context\.csv: column 'item_id', id 1 appears at row 1 \(line 3\) and row 2 \(line 4\)"),
        ("bts/all/all.csv", "", r"all\.csv: empty file"),
    ],
)  # fmt: skip
def test_obd_bad_files_name_file_column_and_row(tmp_path, member, text, match):
    wheel = make_wheel(tmp_path / "obp.whl", obd_members({f"obp/dataset/obd/{member}": text}))
    with pytest.raises(DatasetFileError, match=match):
        load_obd("bts", "all", wheel=wheel)


def test_corrupt_or_missing_wheel_names_the_file(tmp_path, obd_wheel):
    garbage = tmp_path / "broken-0.1-py3-none-any.whl"
    garbage.write_bytes(b"this is not a zip file" * 10)
    with pytest.raises(DatasetFileError, match=r"broken-0\.1-py3-none-any\.whl: not a readable wheel"):
        load_obd(wheel=garbage)
    with pytest.raises(DatasetFileError, match=r"nowhere\.whl: no such file"):
        load_obd(wheel=tmp_path / "nowhere.whl")

    # A member whose compressed bytes are damaged fails its CRC check.
    data = bytearray(obd_wheel.read_bytes())
    with zipfile.ZipFile(obd_wheel) as z:
        info = z.getinfo("obp/dataset/obd/bts/all/all.csv")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(start + 5, start + 40):
        data[k] ^= 0xFF
    damaged = tmp_path / "damaged.whl"
    damaged.write_bytes(bytes(data))
    with pytest.raises(
        DatasetFileError, match=r"damaged\.whl!obp/dataset/obd/bts/all/all\.csv: corrupt member"
    ):
        load_obd(wheel=damaged)


# --------------------------------------------------------------------------- MovieLens


def test_movielens_reads_ids_ratings_and_features(ml_wheel):
    m = load_movielens_100k(wheel=ml_wheel)
    assert (m.n_users, m.n_items, m.n_ratings) == (3, 4, 3)
    np.testing.assert_array_equal(m.user_ids, [196, 186, 7])
    np.testing.assert_array_equal(m.item_ids, [242, 302, 267, 1412])
    np.testing.assert_array_equal(m.user, [0, 1, 0])
    np.testing.assert_array_equal(m.item, [0, 1, 1])
    np.testing.assert_allclose(m.rating, [3, 5, 1])
    np.testing.assert_array_equal(m.timestamp, [881250949, 891717742, 878887116])
    assert m.timestamp.dtype == np.int64

    ages = np.array([20.0, 40.0, 30.0])
    assert m.user_feature_names == (
        "age", "gender=F", "gender=M", "occupation=other", "occupation=writer",
    )  # fmt: skip
    np.testing.assert_allclose(m.user_features[:, 0], (ages - ages.mean()) / ages.std())
    np.testing.assert_array_equal(m.user_features[:, 1:], [[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(m.age, [20, 40, 30])

    genres = ["Animation", "Children's", "Comedy", "Crime", "Film-Noir", "Mystery", "Thriller", "unknown"]
    assert m.item_feature_names == (*(f"genre={g}" for g in genres), "release_year", "release_year_missing")
    np.testing.assert_array_equal(
        m.item_features[:, :8],
        [
            [0, 0, 1, 0, 0, 0, 0, 0],
            [0, 0, 0, 1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 1],
            [1, 1, 0, 0, 0, 0, 0, 0],
        ],
    )
    np.testing.assert_array_equal(m.release_year[:2], [1996, 1998])
    assert np.isnan(m.release_year[2:]).all()  # 'unkonwn' and 'V' in the file
    np.testing.assert_allclose(m.item_features[:, 8], [-1, 1, 0, 0])  # standardised over known years
    np.testing.assert_array_equal(m.item_features[:, 9], [0, 0, 1, 1])
    assert m.genres[1] == ("Crime", "Film-Noir", "Mystery", "Thriller")
    assert m.title[1] == "L.A. Confidential"


def test_movielens_reads_a_directory_of_atomic_files(ml_wheel, tmp_path):
    root = extract(ml_wheel, tmp_path / "x")
    for folder in (root, root / "recbole" / "dataset_example" / "ml-100k"):
        m = load_movielens_100k(wheel=folder)
        assert (m.n_users, m.n_items, m.n_ratings) == (3, 4, 3)


@pytest.mark.parametrize(
    "kind, text, match",
    [
        ("user", None, r"ml-100k\.user"),
        ("inter", ML_INTER.replace("186\t302", "999\t302"),
         r"ml-100k\.inter: column 'user_id', row 1 \(line 3\) is 999, which is not in the user file"),
        ("inter", ML_INTER.replace("\t5\t", "\tfive\t"), r"ml-100k\.inter: column 'rating', row 1 \(line 3\) is 'five'"),
        ("inter", ML_INTER.replace("\t1\t878887116", "\t1"), r"ml-100k\.inter: row 2 \(line 4\) has 3 tab-separated fields"),
        ("item", ML_ITEM.replace("class:token_seq", "genre:token_seq"), r"ml-100k\.item: missing field\(s\) \['class'\]"),
        ("item", ML_ITEM.replace("item_id:token", "item_id"), r"ml-100k\.item: header field 'item_id'"),
        ("user", ML_USER.replace("7\t30", "186\t30"), r"ml-100k\.user: column 'user_id', id 186 appears at row 1"),
    ],
)  # fmt: skip
def test_movielens_bad_files_name_file_and_row(tmp_path, kind, text, match):
    wheel = make_wheel(tmp_path / "rb.whl", ml_members(**{kind: text}))
    with pytest.raises(DatasetFileError, match=match):
        load_movielens_100k(wheel=wheel)


# --------------------------------------------------------------------------- fetch and cache


class FakePip:
    """Stands in for ``subprocess.run``: records calls and writes a wheel into ``-d``."""

    def __init__(self, wheel_bytes=None, returncode=0, stderr=""):
        self.wheel_bytes, self.returncode, self.stderr = wheel_bytes, returncode, stderr
        self.calls = []

    def __call__(self, command, **kwargs):
        self.calls.append(command)
        if self.wheel_bytes is not None:
            target = Path(command[command.index("-d") + 1])
            name, version = command[command.index("-d") - 1].split("==")
            (target / f"{name}-{version}-py3-none-any.whl").write_bytes(self.wheel_bytes)
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


def test_fetch_downloads_once_then_reads_the_cache(tmp_path, monkeypatch, obd_wheel):
    payload = obd_wheel.read_bytes()
    sha = hashlib.sha256(payload).hexdigest()
    pip = FakePip(payload)
    monkeypatch.setattr(_wheel.subprocess, "run", pip)
    cache = tmp_path / "cache"
    path = fetch_wheel("obp", "0.4.1", sha, cache_dir=cache)
    assert path == cache / "obp-0.4.1-py3-none-any.whl" and path.read_bytes() == payload
    command = pip.calls[0]
    assert command[1:5] == ["-m", "pip", "download", "--no-deps"] and "obp==0.4.1" in command
    assert fetch_wheel("obp", "0.4.1", sha, cache_dir=cache) == path
    assert len(pip.calls) == 1  # the second call used the cache

    # The loader goes through the same cache when no wheel is given.
    monkeypatch.setattr(obd, "OBP_WHEEL", WheelSpec("obp", "0.4.1", sha))
    assert load_obd("bts", "all", cache_dir=cache).n_rounds == 4
    assert len(pip.calls) == 1


def test_fetch_reports_pip_failure_with_package_and_manual_steps(tmp_path, monkeypatch):
    stderr = "ERROR: Could not find a version that satisfies the requirement obp==0.4.1"
    monkeypatch.setattr(_wheel.subprocess, "run", FakePip(returncode=1, stderr=stderr))
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as err:
        fetch_wheel("obp", "0.4.1", OBP_WHEEL.sha256, cache_dir=cache)
    message = str(err.value)
    assert "obp==0.4.1" in message and "exited with status 1" in message
    assert "Could not find a version" in message
    assert "pip download --no-deps obp==0.4.1" in message and str(cache) in message

    def no_pip(*args, **kwargs):
        raise FileNotFoundError("python not found")

    monkeypatch.setattr(_wheel.subprocess, "run", no_pip)
    with pytest.raises(FetchError, match=r"recbole==1\.2\.1: pip could not start"):
        fetch_wheel("recbole", "1.2.1", RECBOLE_WHEEL.sha256, cache_dir=cache)


def test_fetch_rejects_a_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setattr(_wheel.subprocess, "run", FakePip(b"not the real wheel"))
    cache = tmp_path / "cache"
    with pytest.raises(
        ChecksumError, match=r"obp-0\.4\.1-py3-none-any\.whl: sha256 [0-9a-f]{64} does not match"
    ):
        fetch_wheel("obp", "0.4.1", OBP_WHEEL.sha256, cache_dir=cache)
    assert not cache.exists() or not list(cache.glob("*.whl"))  # nothing cached

    # A wrong wheel already in the cache is reported by its path, and pip is not run.
    cache.mkdir(exist_ok=True)
    (cache / "obp-0.4.1-py3-none-any.whl").write_bytes(b"tampered")
    pip = FakePip()
    monkeypatch.setattr(_wheel.subprocess, "run", pip)
    with pytest.raises(ChecksumError, match=r"cache/obp-0\.4\.1-py3-none-any\.whl: sha256"):
        fetch_wheel("obp", "0.4.1", OBP_WHEEL.sha256, cache_dir=cache)
    assert pip.calls == []


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TOWERJAX_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("TOWERJAX_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "towerjax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "towerjax"


def test_pinned_wheels():
    assert OBP_WHEEL.filename == "obp-0.4.1-py3-none-any.whl"
    assert RECBOLE_WHEEL.filename == "recbole-1.2.1-py3-none-any.whl"
    assert all(len(s.sha256) == 64 for s in (OBP_WHEEL, RECBOLE_WHEEL))


# --------------------------------------------------------------------------- real data, when cached


def _cached(spec):
    path = default_cache_dir() / spec.filename
    if not path.is_file():
        pytest.skip(f"{spec.filename} is not in the cache (run towerjax.datasets.fetch_* once)")
    return path


def test_real_obd_sample_when_cached():
    d = load_obd("random", "all", wheel=_cached(OBP_WHEEL))
    assert (d.n_rounds, d.n_actions, d.n_positions) == (10000, 80, 3)
    np.testing.assert_allclose(d.propensity_score, 1 / 80)
    assert d.item_features.shape == (80, 41) and d.user_item_affinity.shape == (10000, 80)


def test_real_movielens_when_cached():
    m = load_movielens_100k(wheel=_cached(RECBOLE_WHEEL))
    assert (m.n_users, m.n_items, m.n_ratings) == (943, 1682, 100000)
