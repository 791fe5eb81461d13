"""Importers: tiny copies of each data set's layout in tmp_path, the real metadata files of ICBHI /
COUGHVID / Coswara with fabricated audio, and the real clip sets in ../shared/data."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from respira.audio import write_wav
from respira.data import IMPORTERS, MANIFEST_COLUMNS, DataWarning, import_dataset
from respira.errors import DataError

SR = 16000


@pytest.fixture()
def clip(rng):
    """Write a 0.5 s noise burst at a path (parents made)."""

    def write(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, (0.1 * rng.standard_normal(SR // 2)).astype(np.float32), sample_rate=SR)
        return path

    return write


def _records(df: pd.DataFrame, *columns: str) -> list[tuple]:
    return list(df[list(columns)].itertuples(index=False, name=None))


def test_registry_lists_every_format():
    assert set(IMPORTERS) == {
        "folder", "csv", "nonverbal", "vocalsound", "esc50", "covid19-cough", "covid19-cough-uncut",
        "coughvid", "coswara", "virufy", "icbhi",
    }  # fmt: skip


def test_registry_errors_say_what_was_expected(tmp_path):
    with pytest.raises(DataError, match=r"unknown data set format 'nope'; known formats: coswara, coughvid, covid19"):
        import_dataset("nope", tmp_path)
    with pytest.raises(DataError, match="source not found"):
        import_dataset("folder", tmp_path / "absent")
    with pytest.raises(DataError, match=r"expected metadata file .*meta/esc50\.csv"):
        import_dataset("esc50", tmp_path)
    with pytest.raises(DataError, match=r"expected metadata file .*metadata\.json"):
        import_dataset("covid19-cough", tmp_path)
    with pytest.raises(DataError, match=r"coughvid: expected .*metadata_compiled\.csv"):
        import_dataset("coughvid", tmp_path)
    with pytest.raises(DataError, match=r"unknown option 'colour' \(options: subject_regex\)"):
        import_dataset("folder", tmp_path, colour="red")
    with pytest.raises(DataError, match=r"option 'segmented' must be true or false"):
        import_dataset("virufy", tmp_path, segmented="maybe")


def test_folder_labels_by_class_folder_and_subject_regex(tmp_path, clip):
    for name in ("Cough/spk1_a.wav", "Cough/deeper/spk2_b.flac", "throat-clearing/spk1_c.wav", "loose.wav"):
        if name.endswith(".flac"):
            (tmp_path / name).parent.mkdir(parents=True)
            (tmp_path / name).write_bytes(b"not decoded by importers")
        else:
            clip(tmp_path / name)
    (tmp_path / "Cough" / "notes.txt").write_text("not audio")
    with pytest.warns(DataWarning, match=r"skipped 1 audio file\(s\) directly in"):
        df = import_dataset("folder", tmp_path)
    assert tuple(df.columns) == MANIFEST_COLUMNS
    assert _records(df, "label", "subject", "source_label") == [
        ("cough", "spk2_b", "Cough"), ("cough", "spk1_a", "Cough"), ("throat_clearing", "spk1_c", "throat-clearing"),
    ]  # fmt: skip
    with pytest.warns(DataWarning):
        df = import_dataset("folder", tmp_path, subject_regex=r"^(spk\d)_")
    assert df["subject"].tolist() == ["spk2", "spk1", "spk1"]
    with pytest.raises(DataError, match="invalid --subject-regex"):
        import_dataset("folder", tmp_path, subject_regex="(")


def test_csv_keeps_metadata_and_skips_missing_files(tmp_path, clip):
    clip(tmp_path / "clips" / "a.wav")
    clip(tmp_path / "clips" / "b.wav")
    (tmp_path / "list.csv").write_text(
        "filename,label,subject,start,end,age\n"
        "clips/a.wav,Coughing,p1,,,30\n"
        "clips/b.wav,sneeze,p2,0.1,0.4,41\n"
        "clips/gone.wav,cough,p3,,,50\n"
    )
    with pytest.warns(DataWarning, match=r"skipped 1 row\(s\) .* missing, e\.g\. .*gone\.wav"):
        df = import_dataset("csv", tmp_path / "list.csv")
    assert df["path"].tolist() == [str(tmp_path / "clips" / "a.wav"), str(tmp_path / "clips" / "b.wav")]
    assert _records(df, "label", "source_label", "subject", "age") == [
        ("coughing", "Coughing", "p1", "30"), ("sneeze", "sneeze", "p2", "41"),
    ]  # fmt: skip
    assert np.isnan(df.loc[0, "start"]) and (df.loc[1, "start"], df.loc[1, "end"]) == (0.1, 0.4)
    (tmp_path / "bad.csv").write_text("file,class\nx.wav,cough\n")
    with pytest.raises(DataError, match=r"needs columns filename \(or path\) and label; it has file, class"):
        import_dataset("csv", tmp_path / "bad.csv")


def test_nonverbal_layout(tmp_path, clip):
    clip(tmp_path / "coughing" / "AB12_4_1_0_44_0_0_0.wav")
    clip(tmp_path / "throat-clearing" / "AB12_6_2_0_44_1_0_1.wav")
    clip(tmp_path / "nose-blowing" / "ZZ99_3_5_1_30_0_0_0.wav")
    meta = {
        "AB12": {"sex": "Female", "age": 45, "class": ["coughing"]},
        "QQ00": {"sex": "Male", "age": 20, "class": []},
    }
    (tmp_path / "Nonverbal_Vocalization_metadata.json").write_text(json.dumps(meta))
    df = import_dataset("nonverbal", tmp_path)
    assert _records(df, "label", "source_label", "subject", "sex", "age", "trial", "location", "noise") == [
        ("cough", "coughing", "AB12", "female", 45, 1, 0, 0),  # age from the speaker metadata
        ("nose_blow", "nose-blowing", "ZZ99", "male", 30, 5, 0, 0),  # speaker not listed: from the file name
        ("throat_clear", "throat-clearing", "AB12", "female", 45, 2, 1, 1),
    ]
    with pytest.raises(DataError, match=r"expected .*\{class\}/\{speakerID\}"):
        import_dataset("nonverbal", tmp_path / "coughing")


def test_covid19_cough_one_row_per_clip_broken_files_kept(tmp_path, clip):
    clip(tmp_path / "raw" / "u1.wav")
    (tmp_path / "raw" / "u2.mp3").write_bytes(b"\xff\xfb" + bytes(200))  # broken (< 2 KB): listed, not judged
    meta = [
        {"filename": "u1.wav", "covid19": True, "verified": True, "asymptomatic": False, "source": "telegram"},
        {"filename": "u2.mp3", "covid19": False, "comment": "x", "source": "call-center", "kind": "other"},
    ]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    df = import_dataset("covid19-cough", tmp_path)
    assert _records(df, "label", "subject", "source_label", "source", "sound") == [
        ("covid19", "u1", "covid19=True", "telegram", "cough"),
        ("negative", "u2", "covid19=False", "call-center", "cough"),
    ]
    assert df["kind"].tolist()[1] == "other"


def test_covid19_cough_uncut_events_and_invalid_annotation_warned(tmp_path, clip):
    for u in ("u1", "u2", "u3"):
        clip(tmp_path / "raw" / f"{u}.wav")
    meta = [
        {"filename": "u1.wav", "start_at": 1.5, "end_at": 2.25, "covid19": True, "source": "call-center"},
        {"filename": "u2.wav", "start_at": 9.0, "end_at": 8.0, "covid19": False, "source": "call-center"},
        {"filename": "u3.wav", "start_at": 0.0, "end_at": 0.4, "covid19": False, "source": "call-center"},
    ]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.warns(DataWarning, match=r"u2\.wav: invalid annotation start_at=9\.0 end_at=8\.0; skipped"):
        df = import_dataset("covid19-cough-uncut", tmp_path)
    assert _records(df, "label", "start", "end", "subject", "covid19") == [
        ("cough", 1.5, 2.25, "u1", True), ("cough", 0.0, 0.4, "u3", False),
    ]  # fmt: skip
    (tmp_path / "metadata.json").write_text(json.dumps([{"filename": "u1.wav", "covid19": True}]))
    with pytest.raises(DataError, match="no start_at/end_at; use format covid19-cough"):
        import_dataset("covid19-cough-uncut", tmp_path)


def test_covid19_cough_uncut_background_rows_stay_away_from_the_cough(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_wav(raw / "call.wav", np.zeros(60 * 8000, dtype=np.float32), sample_rate=8000)  # a 60-s call
    meta = [{"filename": "call.wav", "start_at": 20.0, "end_at": 22.0, "covid19": True, "source": "call-center"}]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    df = import_dataset("covid19-cough-uncut", tmp_path, background=3, background_s=4.0, ignore_around_s=10.0)
    bg = df[df["label"] == "background"]
    assert len(bg) == 3 and set(df["subject"]) == {"call"}
    assert ((bg["end"] - bg["start"]) == 4.0).all()
    # [0, 10) and (32, 60] are free: nothing of a background row may fall within 10 s of 20..22 s.
    assert ((bg["end"] <= 10.0) | (bg["start"] >= 32.0)).all()
    assert bg["end"].max() <= 60.0


def test_esc50_layout(tmp_path, clip):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-19111-A-24.wav,1,24,coughing,False,19111,A\n"
        "2-102414-C-17.wav,2,17,crying_baby,True,102414,C\n"
        "3-1000-A-0.wav,3,0,dog,True,1000,A\n"
    )
    for name in ("1-19111-A-24.wav", "2-102414-C-17.wav", "3-1000-A-0.wav"):
        clip(tmp_path / "audio" / name)
    df = import_dataset("esc50", tmp_path)
    assert _records(df, "label", "source_label", "subject", "fold", "esc10") == [
        ("cough", "coughing", "19111", 1, False),
        ("crying", "crying_baby", "102414", 2, True),
        ("dog", "dog", "1000", 3, True),
    ]  # fmt: skip


def test_vocalsound_layout_with_splits_and_speaker_meta(tmp_path, clip):
    names = ("f0003_0_cough", "f0003_0_laughter", "m0010_1_throatclearing", "m0042_0_sniff")
    for n in names:
        clip(tmp_path / "audio_16k" / f"{n}.wav")
    (tmp_path / "datafiles").mkdir()
    (tmp_path / "datafiles" / "tr.json").write_text(json.dumps({"data": [
        {"wav": "/old/place/audio_16k/f0003_0_cough.wav", "labels": "/m/01b_21"},
        {"wav": "/old/place/audio_16k/f0003_0_laughter.wav", "labels": "/m/01j3sz"},
    ]}))  # fmt: skip
    test_list = {"data": [{"wav": "x/m0010_1_throatclearing.wav", "labels": "/m/0dl9sf8"}]}
    (tmp_path / "datafiles" / "te.json").write_text(json.dumps(test_list))
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "all_meta.json").write_text(json.dumps({
        "f0003": ["f0003", "Female", "25", "United States", "English", "no"],
        "m0010": ["m0010", "Male", "61", "India", "Hindi", "asthma"],
    }))  # fmt: skip
    df = import_dataset("vocalsound", tmp_path)
    assert _records(df, "label", "source_label", "subject", "split", "sex", "age", "health_condition")[:3] == [
        ("cough", "cough", "f0003", "train", "female", "25", "no"),
        ("laugh", "laughter", "f0003", "train", "female", "25", "no"),
        ("throat_clear", "throatclearing", "m0010", "test", "male", "61", "asthma"),
    ]
    unlisted = df.iloc[3]  # not in a datafile nor in the meta: no split, sex from the speaker prefix
    assert (unlisted["label"], unlisted["split"], unlisted["sex"]) == ("sniff", "", "male")
    assert pd.isna(unlisted["age"])


def test_virufy_segments_by_recording(tmp_path, clip):
    (tmp_path / "clinical").mkdir()
    (tmp_path / "clinical" / "labels.csv").write_text(
        "patient_id,corona_test,age,gender,cough_filename\n"
        "83,negative,53,male,neg-0421-083-cough-m-53.mp3\n"
        "91,positive,47,female,pos-0421-091-cough-f-47.mp3\n"
        "99,positive,30,male,pos-0421-099-cough-m-30.mp3\n"
    )
    clip(tmp_path / "clinical" / "original" / "neg-0421-083-cough-m-53.wav")
    clip(tmp_path / "clinical" / "original" / "pos-0421-091-cough-f-47.wav")
    for n in (0, 1):
        clip(tmp_path / "clinical" / "segmented" / "pos" / f"pos-0421-091-cough-f-47-{n}.wav")
    with pytest.warns(DataWarning, match=r"skipped 1 recording.*pos-0421-099"):
        df = import_dataset("virufy", tmp_path)
    assert _records(df, "label", "subject", "source_label", "sex") == [
        ("negative", "83", "negative", "male"),
        ("covid19", "91", "positive", "female"),
        ("covid19", "91", "positive", "female"),
    ]  # fmt: skip
    assert [Path(p).name for p in df["path"]][1:] == ["pos-0421-091-cough-f-47-0.wav", "pos-0421-091-cough-f-47-1.wav"]
    with pytest.warns(DataWarning):
        whole = import_dataset("virufy", tmp_path, segmented=False)
    assert [Path(p).name for p in whole["path"]] == ["neg-0421-083-cough-m-53.wav", "pos-0421-091-cough-f-47.wav"]


def test_icbhi_kaggle_copy_finds_metadata_above_the_audio(tmp_path, clip):
    """The Kaggle copy: audio two folders down, `patient_diagnosis.csv` one level up (comma-separated),
    `demographic_info.txt` at the top (spaces), no split file; names of either copy in any case."""
    top = tmp_path / "Respiratory_Sound_Database"
    audio = top / "Respiratory_Sound_Database" / "audio_and_txt_files"
    clip(audio / "101_1b1_Al_sc_Meditron.wav")
    (audio / "101_1b1_Al_sc_Meditron.txt").write_text("0.036\t0.579\t0\t1\n")
    (top / "Respiratory_Sound_Database" / "patient_diagnosis.csv").write_text("101,URTI\n")
    (top / "demographic_info.txt").write_text("101 3 F NA 19 99\n")
    with pytest.warns(DataWarning, match=r"ICBHI_challenge_train_test\.txt not found .* columns stay empty"):
        df = import_dataset("icbhi", audio)
    assert _records(df, "label", "subject", "diagnosis", "sex", "split") == [("wheeze", "101", "URTI", "female", "")]
    (top / "ICBHI_Challenge_train_test.txt").write_text("101_1b1_Al_sc_Meditron\ttest\r\n")  # other case
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert import_dataset("icbhi", audio)["split"].tolist() == ["test"]


def test_coughvid_v3_keeps_the_fourth_expert_and_coswara_pending_is_unknown(tmp_path, clip):
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "metadata_compiled.csv").write_text(
        "uuid,cough_detected,gender,status,status_SSL,quality_1,quality_4,severity_4\n"
        "a1,0.97,female,COVID-19,0.8,good,ok,mild\n"
    )
    clip(tmp_path / "cv" / "a1.webm")
    df = import_dataset("coughvid", tmp_path / "cv")
    assert _records(df, "label", "sex", "status_SSL", "quality_1", "quality_4", "severity_4") == [
        ("covid19", "female", 0.8, "good", "ok", "mild")
    ]
    (tmp_path / "cw").mkdir()
    (tmp_path / "cw" / "combined_data.csv").write_text("id,a,covid_status,g\np1,40,under_validation,male\n")
    clip(tmp_path / "cw" / "20210101" / "p1" / "cough-heavy.wav")
    assert import_dataset("coswara", tmp_path / "cw")["label"].tolist() == ["unknown"]


# --------------------------------------------------------------------- real metadata, fabricated audio


@pytest.mark.shared
def test_icbhi_with_the_real_metadata(shared_data, tmp_path, clip):
    meta = shared_data / "metadata-only" / "icbhi"
    for f in meta.iterdir():
        shutil.copy(f, tmp_path)  # the metadata sits beside the audio folder, as in the challenge download
    audio = tmp_path / "ICBHI_final_database"
    listed = [line.split("\t")[0] for line in (meta / "ICBHI_challenge_train_test.txt").read_text().splitlines()]
    recordings = [r for r in listed if r.startswith(("101_", "103_", "104_"))][:3]
    for r in recordings:
        clip(audio / f"{r}.wav")
        (audio / f"{r}.txt").write_text("0.036\t0.579\t0\t0\n0.579\t2.45\t1\t0\n2.45\t3.0\t0\t1\n3.0\t3.4\t1\t1\n")
    clip(audio / "105_1b1_Tc_sc_Meditron.wav")  # no annotation beside it
    with pytest.warns(DataWarning, match=r"skipped 1 recording\(s\) without a \.txt"):
        df = import_dataset("icbhi", audio)
    assert len(df) == 4 * len(recordings)
    assert df["label"].tolist()[:4] == ["normal", "crackle", "wheeze", "both"]
    first = df.iloc[0]
    assert _records(df.iloc[:1], "subject", "split", "diagnosis", "sex", "age") == [
        ("101", "test", "URTI", "female", 3.0)
    ]
    assert np.isnan(first["bmi"]) and first["child_weight"] == 19.0  # NA = missing
    assert (first["location"], first["mode"], first["device"]) == ("Al", "sc", "Meditron")
    row_103 = df[df["subject"] == "103"].iloc[0]
    assert (row_103["split"], row_103["diagnosis"], row_103["bmi"]) == ("train", "Asthma", 33.0)
    assert df["start"].iloc[1] == 0.579 and df["end"].iloc[1] == 2.45


@pytest.mark.shared
def test_coughvid_with_the_real_metadata(shared_data, tmp_path, clip):
    shutil.copy(shared_data / "metadata-only" / "coughvid" / "metadata_compiled.csv", tmp_path)
    meta = pd.read_csv(tmp_path / "metadata_compiled.csv")
    picks = [meta[meta["status"] == s]["uuid"].iloc[0] for s in ("healthy", "symptomatic", "COVID-19")]
    picks.append(meta[meta["status"].isna()]["uuid"].iloc[0])
    for i, u in enumerate(picks):
        clip(tmp_path / f"{u}.{'webm' if i % 2 else 'ogg'}")
        (tmp_path / f"{u}.json").write_text("{}")
    with pytest.warns(DataWarning, match=rf"skipped {len(meta) - 4} of {len(meta)} row"):
        df = import_dataset("coughvid", tmp_path)
    assert df.set_index("subject").loc[picks, "label"].tolist() == ["healthy", "symptomatic", "covid19", "unknown"]
    expected = meta.set_index("uuid").loc[picks]
    assert np.allclose(df.set_index("subject").loc[picks, "cough_detected"], expected["cough_detected"])
    assert df["cough_detected"].dtype == float
    assert {"age", "sex", "respiratory_condition", "fever_muscle_pain", "quality_1", "severity_3"} <= set(df.columns)
    assert "gender" not in df.columns


@pytest.mark.shared
def test_coswara_with_the_real_metadata(shared_data, tmp_path, clip):
    shutil.copy(shared_data / "metadata-only" / "coswara" / "combined_data.csv", tmp_path)
    meta = pd.read_csv(tmp_path / "combined_data.csv")
    people = [meta[meta["covid_status"] == s].iloc[0] for s in ("healthy", "positive_mild", "recovered_full")]
    for p in people:
        folder = tmp_path / "Extracted_data" / p["record_date"].replace("-", "") / p["id"]
        for sound in ("cough-heavy", "cough-shallow", "vowel-a"):
            clip(folder / f"{sound}.wav")
    clip(tmp_path / "Extracted_data" / "20200101" / "not-a-participant" / "cough-heavy.wav")
    with pytest.warns(DataWarning, match=r"1 participant folder\(s\) not in combined_data\.csv"):
        df = import_dataset("coswara", tmp_path / "Extracted_data")
    assert len(df) == 9
    by_person = df.groupby("subject")["label"].first()
    assert [by_person[p["id"]] for p in people] == ["healthy", "covid19", "recovered_full"]
    assert set(df["recording"]) == {"cough-heavy", "cough-shallow", "vowel-a"}
    assert set(df["sound"]) == {"cough", "vowel"}
    row = df[df["subject"] == people[0]["id"]].iloc[0]
    assert (row["age"], row["sex"]) == (people[0]["a"], people[0]["g"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        coughs = import_dataset("coswara", tmp_path / "Extracted_data", sounds="cough-heavy,vowel-a")
        assert sorted(set(coughs["recording"])) == ["cough-heavy", "vowel-a"] and len(coughs) == 6
        assert set(import_dataset("coswara", tmp_path / "Extracted_data", sounds="cough")["sound"]) == {"cough"}
        with pytest.raises(DataError, match="unknown sounds sneeze"):
            import_dataset("coswara", tmp_path / "Extracted_data", sounds="sneeze")


# --------------------------------------------------------------------- the real clip sets


@pytest.mark.shared
def test_nonverbal_real_set(shared_data):
    df = import_dataset("nonverbal", shared_data / "nonverbal-vocalization")
    assert len(df) == 596 and df["label"].nunique() == 16
    assert df["subject"].nunique() == 328
    assert set(df["sex"]) == {"female", "male"}
    assert df.groupby("label").size()["cough"] == 40


@pytest.mark.shared
def test_covid19_cough_real_set(shared_data):
    df = import_dataset("covid19-cough", shared_data / "covid19-cough")
    assert len(df) == 918
    assert df.groupby(["source", "label"]).size().to_dict() == {
        ("call-center", "covid19"): 338, ("call-center", "negative"): 148,
        ("telegram", "covid19"): 127, ("telegram", "negative"): 305,
    }  # fmt: skip


@pytest.mark.shared
def test_covid19_cough_uncut_real_set(shared_data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        df = import_dataset("covid19-cough-uncut", shared_data / "covid19-cough-uncut")
    notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(notes) == 1 and "098d66e5-bda6-4e99-b787-ab890046c44b.mp3" in notes[0]
    assert len(df) == 366 and set(df["label"]) == {"cough"}
    assert (df["end"] > df["start"]).all()
    clips = import_dataset("covid19-cough", shared_data / "covid19-cough")
    assert set(df["subject"]) <= set(clips["subject"])  # the same uuids: splits must treat them as one subject
