//! The two launch layers, each one release artifact, unpacked:
//!
//! - `start-pgpool`: `bin/start-pgpool`. The lifecycle puts a launch layer's `bin/` on PATH, so
//!   a Procfile says `web: start-pgpool bundle exec puma -p $PORT`.
//! - `pgpool`: our pgpool-II under `pgpool/` (`bin/`, `lib/`), not at the layer's top: the
//!   lifecycle would put a top-level `lib/` on the app's LD_LIBRARY_PATH, and pgpool finds its
//!   libraries through its own RPATH, so the app's processes never load them (bin/compile keeps
//!   them out of the app's way the same way). Its launch env sets `PGPOOL_BIN` (as a default:
//!   a config var of the app's still wins) and appends the pcp tools to PATH.
//!
//! Both are cached: metadata names the artifact and where it came from, and a rebuild that
//! wants the same artifact from the same place keeps the layer and downloads nothing.

use std::path::Path;
use std::process::{Command, Stdio};

use libcnb::build::BuildContext;
use libcnb::data::layer::LayerName;
use libcnb::data::layer_name;
use libcnb::layer::{
    CachedLayerDefinition, InvalidMetadataAction, LayerState, RestoredLayerAction,
};
use libcnb::layer_env::{LayerEnv, ModificationBehavior, Scope};
use serde::{Deserialize, Serialize};

use crate::release::{Release, shown};
use crate::{BuildError, StartPgpool, fetch};

/// What a layer holds: an artifact by name, its sha256, and the location it came from (shown
/// without credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Installed {
    file: String,
    sha256: String,
    location: String,
}

struct Artifact {
    layer: LayerName,
    file: String,
    /// Where in the layer the tarball is unpacked.
    into: &'static str,
    /// The program that must run (`--version`) once unpacked.
    program: &'static str,
}

/// Where the artifacts are looked for: the URL template, and whether the platform set it.
pub struct Source {
    pub template: String,
    pub custom: bool,
}

pub struct Sizes {
    pub launcher_kib: u64,
    pub pgpool_kib: u64,
}

pub fn install(
    context: &BuildContext<StartPgpool>,
    release: &Release,
    source: &Source,
) -> libcnb::Result<Sizes, BuildError> {
    let launcher = Artifact {
        layer: layer_name!("start-pgpool"),
        file: release.launcher_file(),
        into: "",
        program: "bin/start-pgpool",
    };
    let pgpool = Artifact {
        layer: layer_name!("pgpool"),
        file: release.pgpool_file(),
        into: "pgpool",
        program: "pgpool/bin/pgpool",
    };
    let launcher_dir = layer(context, release, source, &launcher)?;
    let pgpool_dir = layer(context, release, source, &pgpool)?;
    Ok(Sizes {
        launcher_kib: kib(&launcher_dir),
        pgpool_kib: kib(&pgpool_dir),
    })
}

/// One artifact's layer: kept when restored with the same artifact, else downloaded, checked
/// and unpacked. Returns the layer's directory.
fn layer(
    context: &BuildContext<StartPgpool>,
    release: &Release,
    source: &Source,
    artifact: &Artifact,
) -> libcnb::Result<std::path::PathBuf, BuildError> {
    let url = release.url_for(&source.template, &artifact.file);
    let location = shown(&url);
    let layer = context.cached_layer(
        &artifact.layer,
        CachedLayerDefinition {
            build: false,
            launch: true,
            invalid_metadata_action: &|_| InvalidMetadataAction::DeleteLayer,
            restored_layer_action: &|m: &Installed, dir: &Path| {
                if m.file == artifact.file
                    && m.location == location
                    && dir.join(artifact.program).is_file()
                {
                    RestoredLayerAction::KeepLayer
                } else {
                    RestoredLayerAction::DeleteLayer
                }
            },
        },
    )?;
    let dir = layer.path();
    match layer.state {
        LayerState::Restored { .. } => {
            println!("-----> start-pgpool: using cached {}", artifact.file);
        }
        LayerState::Empty { .. } => {
            println!("-----> start-pgpool: downloading {}", artifact.file);
            println!("       from {location}");
            let downloads = dir.join(".download");
            let installed = install_artifact(&dir, release, source, &url, artifact);
            // Nothing half-downloaded stays in a layer, whatever failed.
            let _ = std::fs::remove_dir_all(&downloads);
            let sha256 = installed?;
            println!("       sha256 {sha256}");
            layer.write_metadata(Installed {
                file: artifact.file.clone(),
                sha256,
                location: location.clone(),
            })?;
        }
    }
    // Written on every build, restored or not, so a kept layer gets this buildpack's launch
    // env even when an older one cached it.
    if artifact.layer == layer_name!("pgpool") {
        let bin = dir.join(artifact.into).join("bin");
        layer.write_env(
            LayerEnv::new()
                .chainable_insert(
                    Scope::Launch,
                    ModificationBehavior::Default,
                    "PGPOOL_BIN",
                    bin.join("pgpool"),
                )
                .chainable_insert(Scope::Launch, ModificationBehavior::Append, "PATH", &bin)
                .chainable_insert(Scope::Launch, ModificationBehavior::Delimiter, "PATH", ":"),
        )?;
    }
    Ok(dir)
}

/// Download, check, unpack, and see the program run: the sha256 it was checked against.
fn install_artifact(
    dir: &Path,
    release: &Release,
    source: &Source,
    url: &str,
    artifact: &Artifact,
) -> Result<String, BuildError> {
    let sha256 = download_checked(dir, release, source, url, &artifact.file)?;
    let archive = dir.join(".download").join(&artifact.file);
    fetch::unpack(&archive, &dir.join(artifact.into)).map_err(|e| BuildError::Artifact {
        file: artifact.file.clone(),
        why: format!("cannot unpack: {e}"),
    })?;
    runs(&dir.join(artifact.program), &artifact.file, release)?;
    Ok(sha256)
}

/// Downloads the artifact and its `.sha256` into `<layer>/.download/` and checks one against
/// the other. A mismatch leaves nothing there.
fn download_checked(
    dir: &Path,
    release: &Release,
    source: &Source,
    url: &str,
    file: &str,
) -> Result<String, BuildError> {
    let location = &shown(url);
    let downloads = dir.join(".download");
    std::fs::create_dir_all(&downloads)
        .map_err(|e| BuildError::Io(format!("cannot create {}: {e}", downloads.display())))?;
    let failed = |file: &str, why: String| BuildError::Download {
        file: file.to_string(),
        release: Box::new(release.clone()),
        location: location.to_string(),
        why,
        custom: source.custom,
    };
    let sha_file = format!("{file}.sha256");
    let sha_path = downloads.join(&sha_file);
    fetch::download(&format!("{url}.sha256"), &sha_path).map_err(|why| failed(&sha_file, why))?;
    let text = std::fs::read_to_string(&sha_path).unwrap_or_default();
    let Some(want) = fetch::published_sha256(&text) else {
        return Err(BuildError::Checksum {
            file: sha_file,
            location: location.to_string(),
            why: "holds no sha256".into(),
        });
    };
    let path = downloads.join(file);
    fetch::download(url, &path).map_err(|why| failed(file, why))?;
    let got = fetch::sha256_of(&path).map_err(|e| BuildError::Io(e.to_string()))?;
    if got != want {
        return Err(BuildError::Checksum {
            file: file.to_string(),
            location: location.to_string(),
            why: "does not match its published sha256".into(),
        });
    }
    Ok(want)
}

/// The unpacked program must run here: an artifact of another stack may not.
fn runs(program: &Path, file: &str, release: &Release) -> Result<(), BuildError> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(BuildError::Artifact {
            file: file.to_string(),
            why: format!(
                "{} --version failed on this stack ({}, {}): {}",
                program.file_name().unwrap_or_default().to_string_lossy(),
                release.stack,
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        }),
        Err(e) => Err(BuildError::Artifact {
            file: file.to_string(),
            why: format!("holds no runnable {}: {e}", program.display()),
        }),
    }
}

/// A directory's size on disk in KiB, for the build log (a figure, not a check).
fn kib(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| walk(&e.path()))
                .sum()
        } else {
            meta.len()
        }
    }
    walk(dir) / 1024
}
