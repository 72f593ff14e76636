//! Tests of the on-disk check of file paths.

use super::unusable_file_path;

#[test]
fn folders_and_files_in_the_way_are_refused_without_creating_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("adir")).expect("mkdir");
    std::fs::write(dir.path().join("afile"), "x").expect("write");
    let judge = |rel: &str| unusable_file_path(&dir.path().join(rel), "sinks.o.path", "o.jsonl");

    let folder = judge("adir").expect("a folder is refused");
    assert!(
        folder.contains("`sinks.o.path`") && folder.contains("is a folder, not a file"),
        "{folder}"
    );
    for below in ["afile/o.jsonl", "afile/deeper/o.jsonl"] {
        let refused = judge(below).expect("a file in the way is refused");
        assert!(
            refused.contains("afile is a file, not a folder"),
            "{refused}"
        );
    }
    for fine in ["o.jsonl", "adir/o.jsonl", "new/deeper/o.jsonl", "afile"] {
        assert_eq!(judge(fine), None, "{fine}");
    }
    assert!(!dir.path().join("new").exists(), "nothing is created");
}
