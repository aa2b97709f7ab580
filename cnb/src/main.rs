//! The Cloud Native Buildpack (buildpack API 0.10): one binary that libcnb runs as `bin/detect`
//! and `bin/build` (etc/package-cnb makes the links). Detect passes for every app, as the
//! classic bin/detect does: start-pgpool is added on purpose. Build installs the launcher and
//! our pgpool from the release's artifacts into two launch layers (layers.rs).

mod fetch;
mod layers;
mod release;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};
use libcnb::generic::{GenericMetadata, GenericPlatform};
use libcnb::{Buildpack, Platform, buildpack_main};

use crate::release::{Release, URL_VAR};

// The test-only dev-dependency is used by the unit tests alone.
#[cfg(test)]
use tempfile as _;

pub struct StartPgpool;

/// Why a build failed, as its one error line says it.
#[derive(Debug)]
pub enum BuildError {
    /// The release builds linux/amd64 only.
    Arch(String),
    /// START_PGPOOL_RELEASE_URL cannot work, and why (never its value: it may hold a token).
    Template(&'static str),
    /// A download failed: the file, the release it belongs to, where it was looked for (no
    /// credentials), and why.
    Download {
        file: String,
        release: Box<Release>,
        location: String,
        why: String,
        /// Whether the platform set START_PGPOOL_RELEASE_URL.
        custom: bool,
    },
    /// The artifact is not what its `.sha256` publishes (or that file holds no sha256).
    Checksum {
        file: String,
        location: String,
        why: String,
    },
    /// The artifact unpacked, but is not a working build for this stack.
    Artifact {
        file: String,
        why: String,
    },
    Io(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Arch(arch) => write!(
                f,
                "the release builds linux/amd64 only, and this build targets {arch}"
            ),
            BuildError::Template(why) => write!(f, "{URL_VAR}: {why}"),
            BuildError::Download {
                file,
                release,
                location,
                why,
                custom,
            } => f.write_str(&release.download_error(file, why, location, *custom)),
            BuildError::Checksum {
                file,
                location,
                why,
            } => write!(f, "{file} from {location} {why}; nothing was installed"),
            BuildError::Artifact { file, why } => write!(f, "{file}: {why}"),
            BuildError::Io(why) => write!(f, "{why}"),
        }
    }
}

impl From<BuildError> for libcnb::Error<BuildError> {
    fn from(e: BuildError) -> Self {
        libcnb::Error::BuildpackError(e)
    }
}

impl Buildpack for StartPgpool {
    type Platform = GenericPlatform;
    type Metadata = GenericMetadata;
    type Error = BuildError;

    fn detect(&self, _: DetectContext<Self>) -> libcnb::Result<DetectResult, Self::Error> {
        DetectResultBuilder::pass().build()
    }

    fn build(&self, context: BuildContext<Self>) -> libcnb::Result<BuildResult, Self::Error> {
        let started = std::time::Instant::now();
        let target = &context.target;
        if target.arch != "amd64" {
            return Err(BuildError::Arch(format!("{}/{}", target.os, target.arch)).into());
        }
        let release = Release::ours(release::stack_for(
            &target.distro_name,
            &target.distro_version,
        ));
        let custom = context
            .platform
            .env()
            .get_string_lossy(URL_VAR)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if let Some(why) = custom.as_deref().and_then(release::template_problem) {
            return Err(BuildError::Template(why).into());
        }
        let source = layers::Source {
            template: custom.clone().unwrap_or_else(|| release.default_template()),
            custom: custom.is_some(),
        };
        let sizes = layers::install(&context, &release, &source)?;
        println!(
            "-----> start-pgpool: done in {:.1} s (launch layers: start-pgpool {} KiB, pgpool {} KiB)",
            started.elapsed().as_secs_f64(),
            sizes.launcher_kib,
            sizes.pgpool_kib
        );
        BuildResultBuilder::new().build()
    }

    fn on_error(&self, error: libcnb::Error<Self::Error>) {
        match error {
            libcnb::Error::BuildpackError(e) => eprintln!("start-pgpool: error: {e}"),
            other => eprintln!("start-pgpool: error: {other}"),
        }
    }
}

buildpack_main!(StartPgpool);

#[cfg(test)]
mod tests {
    use super::*;

    fn download_error(custom: bool) -> String {
        BuildError::Download {
            file: "f.tar.gz.sha256".into(),
            release: Box::new(Release {
                version: "1.2.3".into(),
                repository: "o/r".into(),
                stack: "heroku-24".into(),
                pgpool_version: "4.7.2".into(),
                pgpool_build: "1".into(),
            }),
            location: "https://h/d/".into(),
            why: "HTTP 404".into(),
            custom,
        }
        .to_string()
    }

    #[test]
    fn a_failed_download_names_the_release_and_the_variable() {
        assert_eq!(
            download_error(false),
            "cannot download f.tar.gz.sha256 (HTTP 404) from https://h/d/: the build looks for \
             release v1.2.3 of github.com/o/r (stack heroku-24); START_PGPOOL_RELEASE_URL (a \
             config var, or the build's environment) points it at another release location \
             ({version} and {file} are filled in)"
        );
        assert_eq!(
            download_error(true),
            "cannot download f.tar.gz.sha256 (HTTP 404) from https://h/d/: the build looks for \
             release v1.2.3 for stack heroku-24 where START_PGPOOL_RELEASE_URL points \
             ({version} and {file} are filled in); point it at a location that has it, or \
             unset it for release v1.2.3 of github.com/o/r (stack heroku-24)"
        );
    }

    #[test]
    fn buildpack_toml_names_this_version_and_api_0_10() {
        let text = include_str!("../buildpack.toml");
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} in buildpack.toml"))
                .to_string()
        };
        assert_eq!(line("api"), r#"api = "0.10""#);
        assert_eq!(
            line("version"),
            format!(r#"version = "{}""#, env!("CARGO_PKG_VERSION"))
        );
    }
}
