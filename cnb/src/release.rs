//! Which release the build installs, and where it looks for it: pure, from what was compiled in
//! (this crate's version, etc/pgpool-version, etc/release-location) and the build's target.
//! bin/compile names the same files from the same places, so both buildpacks share one release.

const PGPOOL_VERSION_FILE: &str = include_str!("../../etc/pgpool-version");
const RELEASE_LOCATION_FILE: &str = include_str!("../../etc/release-location");
/// The failed download's error line, which bin/compile reads from the same file.
const DOWNLOAD_ERROR_FILE: &str = include_str!("../../etc/download-error");

/// The config var (platform env) that points builds at another release location.
pub const URL_VAR: &str = "START_PGPOOL_RELEASE_URL";

/// The two artifacts of one release for one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// This buildpack's version: the release tag is `v{version}`.
    pub version: String,
    pub repository: String,
    pub stack: String,
    pub pgpool_version: String,
    pub pgpool_build: String,
}

impl Release {
    /// The release this build of the buildpack belongs to, for `stack`.
    pub fn ours(stack: String) -> Release {
        let pinned = |key| {
            value_of(PGPOOL_VERSION_FILE, key).unwrap_or_else(|| {
                unreachable!("etc/pgpool-version has {key} (a unit test checks it)")
            })
        };
        Release {
            version: env!("CARGO_PKG_VERSION").to_string(),
            repository: value_of(RELEASE_LOCATION_FILE, "START_PGPOOL_REPOSITORY")
                .unwrap_or_else(|| unreachable!("etc/release-location names the repository")),
            stack,
            pgpool_version: pinned("PGPOOL_VERSION"),
            pgpool_build: pinned("PGPOOL_BUILD"),
        }
    }

    pub fn launcher_file(&self) -> String {
        format!("start-pgpool-{}-{}.tar.gz", self.version, self.stack)
    }

    pub fn pgpool_file(&self) -> String {
        format!(
            "pgpool-{}-{}-{}.tar.gz",
            self.pgpool_version, self.pgpool_build, self.stack
        )
    }

    /// The URL template when the platform sets none: this release on GitHub.
    pub fn default_template(&self) -> String {
        format!(
            "https://github.com/{}/releases/download/v{{version}}/{{file}}",
            self.repository
        )
    }

    /// The error line for `file` that could not be downloaded from `location` (already shown
    /// without credentials) because of `why`: etc/download-error's `custom` line when the
    /// platform set the URL template, else its `default` line, filled in as bin/compile fills
    /// it (one name after the other, the values that come from outside last).
    pub fn download_error(&self, file: &str, why: &str, location: &str, custom: bool) -> String {
        let key = if custom { "custom" } else { "default" };
        let text = value_of(DOWNLOAD_ERROR_FILE, key).unwrap_or_else(|| {
            unreachable!("etc/download-error has a {key}= line (a unit test checks it)")
        });
        [
            ("version", self.version.as_str()),
            ("stack", &self.stack),
            ("repository", &self.repository),
            ("file", file),
            ("location", location),
            ("why", why),
        ]
        .iter()
        .fold(text, |text, (name, value)| {
            text.replace(&format!("@{name}@"), value)
        })
    }

    /// `{version}` and `{file}` filled in, as bin/compile does.
    pub fn url_for(&self, template: &str, file: &str) -> String {
        template
            .replace("{version}", &self.version)
            .replace("{file}", file)
    }
}

/// `KEY=value` from a shell-sourced file such as etc/pgpool-version.
fn value_of(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The stack name the release's artifacts carry for a target distribution: Heroku's base images
/// are Ubuntu LTS releases, named heroku-NN; any other distribution is `<id>-<version>`, as
/// etc/build-pgpool names a build made outside Heroku (debian-12).
pub fn stack_for(distro_name: &str, distro_version: &str) -> String {
    match (distro_name, distro_version) {
        ("ubuntu", v) if v.ends_with(".04") && v.len() == 5 => format!("heroku-{}", &v[..2]),
        (name, version) => format!("{name}-{version}"),
    }
}

/// A URL as an error or the build log may show it: the directory part only, without user,
/// password, query or fragment (a token in a private mirror's URL is a secret).
pub fn shown(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "(not a URL)".to_string();
    };
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.set_query(None);
    u.set_fragment(None);
    if let Ok(mut segments) = u.path_segments_mut() {
        segments.pop();
        segments.push("");
    }
    u.to_string()
}

/// Why a `START_PGPOOL_RELEASE_URL` cannot work, if it cannot: each artifact and its `.sha256`
/// are named by appending to the path, so the template must name `{file}` and end there.
pub fn template_problem(template: &str) -> Option<&'static str> {
    if !template.contains("{file}") {
        Some("has no {file}, so every artifact would come from one URL")
    } else if !template.ends_with("{file}") {
        Some(
            "must end with {file} (the .sha256 beside each artifact is its URL with .sha256 added; no query string)",
        )
    } else if url::Url::parse(&template.replace("{version}", "0").replace("{file}", "f")).is_err() {
        Some("is not a URL")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_files_have_every_key() {
        let r = Release::ours("heroku-24".into());
        assert!(r.pgpool_version.starts_with("4."), "{r:?}");
        assert!(!r.pgpool_build.is_empty());
        assert!(r.repository.contains('/'), "{r:?}");
    }

    fn example() -> Release {
        Release {
            version: "1.2.3".into(),
            repository: "o/r".into(),
            stack: "heroku-24".into(),
            pgpool_version: "4.7.2".into(),
            pgpool_build: "3".into(),
        }
    }

    #[test]
    fn artifact_names_match_bin_compile() {
        let r = example();
        assert_eq!(r.launcher_file(), "start-pgpool-1.2.3-heroku-24.tar.gz");
        assert_eq!(r.pgpool_file(), "pgpool-4.7.2-3-heroku-24.tar.gz");
        assert_eq!(
            r.url_for(&r.default_template(), &r.pgpool_file()),
            "https://github.com/o/r/releases/download/v1.2.3/pgpool-4.7.2-3-heroku-24.tar.gz"
        );
        assert_eq!(
            r.url_for("file:///m/{version}/{file}", "x"),
            "file:///m/1.2.3/x"
        );
        assert_eq!(
            r.download_error("f.sha256", "HTTP 404", "https://h/d/", false),
            "cannot download f.sha256 (HTTP 404) from https://h/d/: the build looks for release \
             v1.2.3 of github.com/o/r (stack heroku-24); START_PGPOOL_RELEASE_URL (a config var, \
             or the build's environment) points it at another release location ({version} and \
             {file} are filled in)"
        );
    }

    #[test]
    fn stacks_follow_herokus_names() {
        assert_eq!(stack_for("ubuntu", "24.04"), "heroku-24");
        assert_eq!(stack_for("ubuntu", "22.04"), "heroku-22");
        assert_eq!(stack_for("ubuntu", "26.04"), "heroku-26");
        assert_eq!(stack_for("ubuntu", "23.10"), "ubuntu-23.10");
        assert_eq!(stack_for("debian", "12"), "debian-12");
    }

    #[test]
    fn shown_urls_keep_no_credentials() {
        assert_eq!(
            shown("https://user:s3cr%3At@mirror.example/rel/v1/f.tar.gz"),
            "https://mirror.example/rel/v1/"
        );
        assert_eq!(
            shown("https://token@mirror.example/f"),
            "https://mirror.example/"
        );
        assert_eq!(shown("file:///srv/rel/f.tar.gz"), "file:///srv/rel/");
        assert_eq!(
            shown("https://m.example/a/f.tar.gz?X-Sig=ab/cd#x"),
            "https://m.example/a/"
        );
        assert_eq!(shown("nonsense"), "(not a URL)");
    }

    #[test]
    fn templates_must_end_with_the_file() {
        assert_eq!(template_problem("https://h/v{version}/{file}"), None);
        assert_eq!(template_problem("file:///srv/{file}"), None);
        assert!(
            template_problem("https://h/fixed.tar.gz")
                .unwrap()
                .contains("no {file}")
        );
        assert!(
            template_problem("https://h/{file}?sig=1")
                .unwrap()
                .contains("end with")
        );
        assert!(
            template_problem("/srv/{file}")
                .unwrap()
                .contains("not a URL")
        );
    }

    #[test]
    fn the_download_error_fills_every_name_and_nothing_else() {
        let r = example();
        for custom in [false, true] {
            let line = r.download_error("F", "W", "L", custom);
            assert!(!line.contains('@') && !line.contains('\n'), "{line}");
            assert!(line.starts_with("cannot download F (W) from L: "), "{line}");
            assert!(line.contains(URL_VAR) && line.contains("o/r"), "{line}");
        }
    }

    #[test]
    fn values_are_read_like_the_shell_would() {
        let text = "# c\nA=1\nPGPOOL_BUILD=\"2\"\nAB=x\n";
        assert_eq!(value_of(text, "A").as_deref(), Some("1"));
        assert_eq!(value_of(text, "PGPOOL_BUILD").as_deref(), Some("2"));
        assert_eq!(value_of(text, "B"), None);
    }
}
