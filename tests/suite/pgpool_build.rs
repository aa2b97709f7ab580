//! The release name of our pgpool (`pgpool-<version>-<PGPOOL_BUILD>-<stack>.tar.gz`, which
//! bin/compile, the CNB and etc/release-artifacts all take from etc/pgpool-version) changes
//! whenever what it is built from changes: the pinned source or a patch. bin/compile keeps a
//! verified artifact in the app's build cache by name, so a new build under an old name would
//! never reach those apps. etc/pgpool-version records PGPOOL_INPUTS, a digest of those inputs,
//! beside PGPOOL_BUILD, and etc/pgpool-builds every (version, build, digest) released so far:
//! a changed input fails until PGPOOL_INPUTS is set again, and a new digest fails until it has a
//! line of its own in the history under a build number that version has not used.
//!
//! The digest is the one this shell line prints, so it can be checked without Rust:
//! `{ grep -E '^PGPOOL_(VERSION|DEBIAN_VERSION|ORIG_SHA256)=' etc/pgpool-version; sha256sum
//! patches/*.patch; } | sha256sum`

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the shell line above feeds to its last `sha256sum`.
fn inputs(version_file: &str, patches: &[(String, Vec<u8>)]) -> String {
    let mut text = String::new();
    for line in version_file.lines() {
        let pinned = [
            "PGPOOL_VERSION=",
            "PGPOOL_DEBIAN_VERSION=",
            "PGPOOL_ORIG_SHA256=",
        ];
        if pinned.iter().any(|k| line.starts_with(k)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    for (name, bytes) in patches {
        text.push_str(&format!(
            "{}  patches/{name}\n",
            hex(&openssl::sha::sha256(bytes))
        ));
    }
    text
}

fn value(version_file: &str, key: &str) -> Option<String> {
    version_file
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
}

#[test]
fn pgpool_build_changes_with_the_patches_and_the_pinned_source() {
    let version_file = std::fs::read_to_string(Path::new(ROOT).join("etc/pgpool-version")).unwrap();
    let mut patches: Vec<(String, Vec<u8>)> = std::fs::read_dir(Path::new(ROOT).join("patches"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    // The glob's order (the patch names are ASCII, so byte order is every locale's order).
    patches.sort();
    assert!(!patches.is_empty(), "no patches/*.patch");
    let text = inputs(&version_file, &patches);
    assert_eq!(text.lines().count(), 3 + patches.len(), "{text}");
    let digest = hex(&openssl::sha::sha256(text.as_bytes()));
    let build = value(&version_file, "PGPOOL_BUILD").expect("PGPOOL_BUILD in etc/pgpool-version");
    assert!(
        build.parse::<u32>().is_ok_and(|n| n > 0),
        "PGPOOL_BUILD={build} is not a build number"
    );
    let version = value(&version_file, "PGPOOL_VERSION").expect("PGPOOL_VERSION");
    let next = format!("{version} {} {digest}", build.parse::<u32>().unwrap() + 1);
    assert_eq!(
        value(&version_file, "PGPOOL_INPUTS").as_deref(),
        Some(digest.as_str()),
        "patches/ or the pinned source changed: in etc/pgpool-version bump PGPOOL_BUILD (now \
         {build}) and set PGPOOL_INPUTS={digest}, and append to etc/pgpool-builds: {next}"
    );
    let history = std::fs::read_to_string(Path::new(ROOT).join("etc/pgpool-builds")).unwrap();
    if let Err(why) = check_history(&history, &version, &build, &digest) {
        panic!("etc/pgpool-builds: {why}");
    }
}

/// The history's rules: its last line is the current build; no digest twice; a version's build
/// numbers only go up (so a bump cannot be forgotten, nor a number reused).
fn check_history(history: &str, version: &str, build: &str, digest: &str) -> Result<(), String> {
    let mut seen: Vec<(String, u32, String)> = Vec::new();
    for line in history
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [v, b, d] = f[..] else {
            return Err(format!("{line:?} is not 'VERSION BUILD DIGEST'"));
        };
        let b: u32 = b
            .parse()
            .map_err(|_| format!("{line:?}: {b} is no build number"))?;
        if seen.iter().any(|(_, _, sd)| sd == d) {
            return Err(format!("{line:?}: its digest is an earlier build's"));
        }
        if seen.iter().any(|(sv, sb, _)| sv == v && *sb >= b) {
            return Err(format!(
                "{line:?}: build {b} of {v} is not above every earlier build of {v}: bump \
                 PGPOOL_BUILD in etc/pgpool-version"
            ));
        }
        seen.push((v.to_string(), b, d.to_string()));
    }
    let want = (
        version.to_string(),
        build.parse().unwrap_or(0),
        digest.to_string(),
    );
    match seen.last() {
        Some(last) if *last == want => Ok(()),
        _ => Err(format!(
            "its last line must be the build in etc/pgpool-version: append '{version} {build} \
             {digest}' (a new digest needs a new PGPOOL_BUILD)"
        )),
    }
}

#[test]
fn the_history_refuses_a_forgotten_bump_and_a_reused_number() {
    let h = "# c\n4.7.2 2 aa\n";
    assert_eq!(check_history(h, "4.7.2", "2", "aa"), Ok(()));
    // A new digest under the same number, with or without its line.
    assert!(check_history(h, "4.7.2", "2", "bb").is_err());
    assert!(check_history(&format!("{h}4.7.2 2 bb\n"), "4.7.2", "2", "bb").is_err());
    // A number going back, or a digest coming back.
    assert!(check_history(&format!("{h}4.7.2 1 bb\n"), "4.7.2", "1", "bb").is_err());
    assert!(check_history(&format!("{h}4.7.2 3 aa\n"), "4.7.2", "3", "aa").is_err());
    // The bump done right; an upgrade starts again at 1.
    assert_eq!(
        check_history(&format!("{h}4.7.2 3 bb\n"), "4.7.2", "3", "bb"),
        Ok(())
    );
    assert_eq!(
        check_history(&format!("{h}4.8.0 1 cc\n"), "4.8.0", "1", "cc"),
        Ok(())
    );
    assert!(check_history("4.7.2 x aa\n", "4.7.2", "2", "aa").is_err());
}

#[test]
fn the_digest_covers_each_input() {
    let file = "# c\nPGPOOL_VERSION=4.7.2\nPGPOOL_DEBIAN_VERSION=4.7.2-1\nPGPOOL_DEBIAN_SUITE=sid\n\
                PGPOOL_ORIG_SHA256=ab\nPGPOOL_BUILD=2\nPGPOOL_INPUTS=x\n";
    let patches = vec![(
        "0001-detect-immediate-shutdown-notice.patch".to_string(),
        b"abc".to_vec(),
    )];
    assert_eq!(
        inputs(file, &patches),
        "PGPOOL_VERSION=4.7.2\nPGPOOL_DEBIAN_VERSION=4.7.2-1\nPGPOOL_ORIG_SHA256=ab\n\
         ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  patches/0001-detect-immediate-shutdown-notice.patch\n"
    );
    let base = inputs(file, &patches);
    let changed = [
        inputs(&file.replace("4.7.2-1", "4.7.2-2"), &patches),
        inputs(&file.replace("=ab", "=cd"), &patches),
        inputs(
            file,
            &[(
                "0001-detect-immediate-shutdown-notice.patch".to_string(),
                b"abd".to_vec(),
            )],
        ),
        inputs(file, &[("0001-b.patch".to_string(), b"abc".to_vec())]),
        inputs(file, &[]),
    ];
    for c in changed {
        assert_ne!(c, base);
    }
    // Where the source is fetched from and the build number itself are not inputs.
    assert_eq!(inputs(&file.replace("=sid", "=forky"), &patches), base);
    assert_eq!(inputs(&file.replace("BUILD=2", "BUILD=3"), &patches), base);
}
