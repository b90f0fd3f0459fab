
import pytest
from shared_data import PMV400_DIR

from pmv.config.schema import DataConfig
from pmv.data.annotations import (
    find_missing,
    list_file,
    load_split,
    parse_class_names,
    parse_video_list,
    read_class_names,
    read_video_list,
)
from pmv.errors import DataError

PMV400 = PMV400_DIR


def test_comma_list_without_trailing_newline():
    videos = parse_video_list("a.mp4,0\nb.mp4,3\nc.mp4,1", "x.csv")
    assert videos.paths == ["a.mp4", "b.mp4", "c.mp4"]
    assert videos.labels == [0, 3, 1]
    assert videos.lines == [1, 2, 3]


def test_space_and_three_column_forms():
    spaced = parse_video_list("a.mp4 2\nb.mp4\t5\n\n", "x.txt", separator=" ")
    assert spaced.paths == ["a.mp4", "b.mp4"] and spaced.labels == [2, 5]
    three = parse_video_list("a.mp4,ignored,4\nb.mp4,x,1", "x.csv")
    assert three.paths == ["a.mp4", "b.mp4"] and three.labels == [4, 1]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("a.mp4,0\nb.mp4,zero", 2, "not an integer"),
        ("a.mp4,0\nb.mp4 1", 2, "separator"),
        ("a.mp4,0\n\nb.mp4,-1", 3, "negative"),
        ("a.mp4,0\nb.mp4,1\na.mp4,2", 3, "listed twice (also on line 1)"),
        ("a.mp4,1,2,3", 1, "expected"),
        (",1", 1, "empty"),
    ],
)
def test_list_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        read_video_list(path)
    message = str(info.value)
    assert f"{path}, line {line}" in message
    assert words in message


def test_list_label_beyond_classes_and_missing_file(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("a.mp4,0\nb.mp4,7")
    with pytest.raises(DataError, match=r"line 2: label 7 is outside the 5 classes"):
        read_video_list(path, num_classes=5)
    with pytest.raises(DataError, match="annotation list not found"):
        read_video_list(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_video_list(tmp_path / "empty.csv")


def test_class_names_split_on_last_comma_and_strip():
    names = parse_class_names("b, c (d/e),1\nplaying flute ,0\nz,2")
    assert names == ["playing flute", "b, c (d/e)", "z"]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("a,0\nb,2", 2, "class id 2 is out of range"),
        ("a,0\nb,0", 2, "class id 0 is used twice"),
        ("a,0\na,1", 2, "class name 'a' is used twice"),
        ("a,0\nb", 2, "expected '<class name>,<id>'"),
        ("a,0\nb,one", 2, "not an integer"),
    ],
)
def test_class_name_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "class_name_mapping.csv"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        read_class_names(path)
    assert f"{path}, line {line}" in str(info.value)
    assert words in str(info.value)


def test_layout_template_root_and_missing(tmp_path):
    lists = tmp_path / "lists"
    videos = tmp_path / "videos"
    lists.mkdir()
    videos.mkdir()
    (lists / "train_mini.csv").write_text("a.mp4,0\nb.mp4,1\nc.mp4,1")
    (lists / "class_name_mapping.csv").write_text("cat,0\ndog,1")
    (videos / "a.mp4").write_bytes(b"x")
    (videos / "c.mp4").write_bytes(b"x")
    data = DataConfig(list_dir=str(lists), subset="_mini", root=str(videos))
    assert list_file(data, "train") == lists / "train_mini.csv"
    seed_style = DataConfig(list_dir=str(lists), subset="_mini", list_template="{}{}.csv")
    assert list_file(seed_style, "train") == lists / "train_mini.csv"
    split = load_split(data, "train")
    assert split.paths == [str(videos / n) for n in ("a.mp4", "b.mp4", "c.mp4")]
    assert split.labels == [0, 1, 1]
    assert split.class_names == ["cat", "dog"] and split.num_classes == 2
    assert split.missing == [str(videos / "b.mp4")]
    assert find_missing([str(videos / "a.mp4"), str(tmp_path / "nowhere" / "x.mp4")]) == [
        str(tmp_path / "nowhere" / "x.mp4")
    ]
    with pytest.raises(DataError, match="cannot be filled"):
        list_file(DataConfig(list_dir=str(lists), list_template="{mode}.csv"), "train")
    with pytest.raises(DataError, match="class-name mapping not found"):
        load_split(DataConfig(list_dir=str(lists), subset="_mini", class_names=str(tmp_path / "none.csv")), "train")


@pytest.mark.skipif(not PMV400.is_dir(), reason="../shared/pmv400 (the real PMV-400 lists) is not here")
def test_real_pmv400_lists():
    data = DataConfig(list_dir=str(PMV400), subset="_pmv400", root=str(PMV400 / "videos"))
    train = load_split(data, "train", check_files=False)
    val = load_split(data, "val", check_files=False)
    assert train.num_classes == 400
    assert len(train) == 56452 and len(val) == 19995
    assert set(train.labels) == set(range(400)) and set(val.labels) == set(range(400))
    assert not set(train.paths) & set(val.paths)
    assert train.class_names[0] == "applying lip glaze"
    assert train.class_names[399] == "playing mahjong game"
    assert all(name == name.strip() for name in train.class_names)


def test_absent_split_is_also_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation list not found"):
        load_split(DataConfig(list_dir=str(tmp_path)), "val")
