//! Listing data sets and checking them: image folders, manifests, the shipped digits, and a
//! report that names every problem at once.

use std::path::{Path, PathBuf};

use cv_data::{check, ClassMap, Dataset, ManifestColumns};
use image::{DynamicImage, ImageBuffer, Rgb};

fn write_png(path: &Path, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(4, 4, Rgb([value, value, value])));
    img.save(path).unwrap();
}

fn digits_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/digits/manifest.csv")
}

#[test]
fn shipped_digits_load_and_check_clean() {
    let data =
        Dataset::from_manifest(&digits_manifest(), &ManifestColumns::default(), None).unwrap();
    assert_eq!(data.len(), 1797);
    assert_eq!(
        data.classes.names(),
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    assert_eq!(
        data.class_counts(),
        [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    let report = check(&data, 5);
    assert!(report.is_ok(), "{report}");
    let image = cv_data::decode::decode_file(&data.samples[0].path, 1).unwrap();
    assert_eq!((image.channels, image.height, image.width), (1, 8, 8));
    // The same files read as an image folder give the same samples and labels.
    let folder = Dataset::from_image_folder(digits_manifest().parent().unwrap()).unwrap();
    assert_eq!(folder.len(), 1797);
    assert_eq!(folder.classes, data.classes);
    let mut by_path: Vec<(PathBuf, usize)> = data
        .samples
        .iter()
        .map(|s| (s.path.clone(), s.label))
        .collect();
    by_path.sort();
    let folder_pairs: Vec<(PathBuf, usize)> = folder
        .samples
        .iter()
        .map(|s| (s.path.clone(), s.label))
        .collect();
    assert_eq!(by_path, folder_pairs);
}

#[test]
fn image_folder_sorts_classes_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("zebra/b.png"), 10);
    write_png(&dir.path().join("zebra/a.png"), 10);
    write_png(&dir.path().join("ant/nested/c.PNG"), 10);
    std::fs::write(dir.path().join("ant/notes.txt"), "not an image").unwrap();
    let data = Dataset::from_image_folder(dir.path()).unwrap();
    assert_eq!(data.classes.names(), ["ant", "zebra"]);
    let names: Vec<String> = data
        .samples
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["c.PNG", "a.png", "b.png"]);
    assert_eq!(data.labels(), [0, 1, 1]);
}

#[test]
fn check_reports_every_problem_with_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_png(&root.join("ok1.png"), 1);
    write_png(&root.join("ok2.png"), 2);
    std::fs::write(root.join("empty.png"), b"").unwrap();
    std::fs::write(root.join("corrupt.jpg"), b"\xff\xd8\xff garbage").unwrap();
    let manifest = root.join("manifest.csv");
    std::fs::write(
        &manifest,
        "path,label,group\n\
         ok1.png,cat,p1\n\
         ok2.png,dog,p2\n\
         missing.png,cat,p3\n\
         empty.png,dog,p4\n\
         corrupt.jpg,cat,p5\n\
         ok1.png,cat,p6\n\
         ok2.png,,p7\n",
    )
    .unwrap();
    let data = Dataset::from_manifest(&manifest, &ManifestColumns::default(), None).unwrap();
    assert_eq!(data.samples[0].group.as_deref(), Some("p1"));
    let report = check(&data, 3);
    let text = report.to_string();
    let m = manifest.display().to_string();
    for expected in [
        format!(
            "{m}:7 ({}): duplicate path (first listed on line 2)",
            root.join("ok1.png").display()
        ),
        format!("{m}:8 ({}): empty label", root.join("ok2.png").display()),
        format!(
            "{m}:4 ({}): file not found",
            root.join("missing.png").display()
        ),
        format!(
            "{m}:5 ({}): empty file (0 bytes)",
            root.join("empty.png").display()
        ),
        format!(
            "{m}:6 ({}): cannot decode the image",
            root.join("corrupt.jpg").display()
        ),
        "class \"cat\": only 1 usable image, fewer than the 3 the requested folds need".to_string(),
        "class \"dog\": only 1 usable image".to_string(),
    ] {
        assert!(
            text.contains(&expected),
            "report lacks {expected:?}:\n{text}"
        );
    }
    assert_eq!(report.problems.len(), 7, "{text}");
}

#[test]
fn unknown_labels_against_a_known_class_list() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("a.png"), 1);
    write_png(&dir.path().join("b.png"), 1);
    let manifest = dir.path().join("test.csv");
    std::fs::write(&manifest, "file,class\na.png,cat\nb.png,horse\n").unwrap();
    let columns = ManifestColumns {
        path: "file".into(),
        label: "class".into(),
        ..ManifestColumns::default()
    };
    let known = ClassMap::new(["cat", "dog"]);
    let data = Dataset::from_manifest(&manifest, &columns, Some(&known)).unwrap();
    assert_eq!(data.len(), 1);
    let report = check(&data, 0);
    assert_eq!(report.problems.len(), 1);
    assert!(report.to_string().contains(":3 ("), "{report}");
    assert!(
        report.to_string().contains("unknown label \"horse\""),
        "{report}"
    );
    // A wrong column name is an error naming the column and the file.
    let err = Dataset::from_manifest(&manifest, &ManifestColumns::default(), None).unwrap_err();
    assert!(
        err.to_string().contains("no column named \"path\""),
        "{err}"
    );
    assert!(err.to_string().contains("test.csv"), "{err}");
}
