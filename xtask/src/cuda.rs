//! `cargo xtask build-cuda`: a release `cv` with `--features cuda`, built against a pinned CUDA 13.0
//! toolkit from PyPI (or the user's own toolkit when `CUDA_HOME` is set).
//!
//! The pinned toolkit is laid out under `target/cuda-toolkit/` as a `CUDA_HOME`-shaped tree
//! (`cuda/bin`, `cuda/include`, `cuda/nvvm`, `cuda/lib`, `cuda/lib/stubs`): nvcc, headers, nvvm and
//! libcudart come from NVIDIA's wheels; the libraries only needed at link time (libcuda, and unless
//! `--full` cuBLAS, cuBLASLt, cuRAND and NVRTC) are stubs compiled from the function names in
//! cudarc's bindings. The stubs exist only so the linker can resolve symbols; they are never on a
//! run-time loader path. Running the task again reuses what is already laid out.
//!
//! The build goes to a target folder of its own (`target/cuda/`), so it neither invalidates the
//! CPU build nor mixes with `tools/cuda/check.sh`'s stand-in output (`target/cuda-check/`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

/// The pinned toolkit: nvcc and what it needs, headers and libcudart. Pin 13.0: the driver on
/// the GPU machines we use (580) JIT-compiles PTX up to ISA 9.0, and newer nvcc writes newer PTX.
const TOOLKIT: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
];

/// `--full`: the real libraries the binary links against, instead of link-time stubs (~570 MB).
const FULL_EXTRA: &[&str] = &[
    "nvidia-cublas==13.1.0.3",
    "nvidia-curand==10.4.0.35",
    "nvidia-cuda-nvrtc==13.0.88",
];

/// `CUDARC_CUDA_VERSION` for the pinned toolkit.
const PINNED_CUDARC_VERSION: &str = "13000";

/// Link-time stubs: (cudarc module, library name, soname, value every stub returns).
/// libcuda's return 34, `CUDA_ERROR_STUB_LIBRARY`, should one ever be loaded by mistake.
const STUBS: &[(&str, &str, &str, i32)] = &[
    ("driver", "cuda", "libcuda.so.1", 34),
    ("cublas", "cublas", "libcublas.so.13", 1),
    ("cublaslt", "cublasLt", "libcublasLt.so.13", 1),
    ("curand", "curand", "libcurand.so.10", 1),
    ("nvrtc", "nvrtc", "libnvrtc.so.13", 1),
];

/// The libraries `cv` needs at run time besides the driver's libcuda.so.1.
const RUNTIME_LIBS: &str = "libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10";

#[derive(Args)]
pub struct BuildCudaArgs {
    /// GPU compute capability to build candle's static kernels for: 90 for H100/H200, 80 for
    /// A100, 86 for RTX 30xx/A40, 89 for RTX 40xx/L40, 120 for RTX 50xx. The PTX kernels are
    /// JIT-compiled by the driver for whatever GPU runs them.
    #[arg(long, env = "CUDA_COMPUTE_CAP", default_value = "90", value_parser = parse_compute_cap)]
    compute_cap: String,
    /// Install the real cuBLAS, cuRAND and NVRTC wheels (~570 MB more) instead of link-time
    /// stubs, so that `target/cuda-toolkit/cuda/lib` alone (with the driver) runs the binary.
    /// Ignored when `CUDA_HOME` is set.
    #[arg(long)]
    full: bool,
    /// Lay out the toolkit and write its `env.sh`, but do not build.
    #[arg(long)]
    toolkit_only: bool,
    /// Also build the GPU benchmark (cv-model's `model_timing` example), and pack it with `cv`
    /// into `target/cuda/gpu-check/` for `tools/cuda/gpu-check.sh` on a GPU machine.
    #[arg(long, conflicts_with = "toolkit_only")]
    bench: bool,
}

fn parse_compute_cap(s: &str) -> Result<String, String> {
    let digits = s.strip_suffix('a').unwrap_or(s);
    match digits.parse::<u32>() {
        Ok(n) if (50..=130).contains(&n) => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?} is not a compute capability: use e.g. 80, 86, 89, 90 or 120"
        )),
    }
}

/// A toolkit to build with.
struct Toolkit {
    /// The `CUDA_HOME`-shaped root.
    root: PathBuf,
    /// `CUDARC_CUDA_VERSION`, e.g. `13000`.
    cudarc_version: String,
    /// `nvcc --version`'s release line.
    release: String,
    /// Whether it is our pinned toolkit with link-time stubs for libraries it lacks.
    pinned: bool,
    /// With `--full`: real cuBLAS/cuRAND/NVRTC under `root/lib`.
    full: bool,
}

pub fn run(args: BuildCudaArgs) -> Result<()> {
    let workspace = crate::workspace_root()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                workspace.join(t)
            }
        })
        .unwrap_or_else(|| workspace.join("target"));

    let toolkit = match std::env::var_os("CUDA_HOME").filter(|h| !h.is_empty()) {
        Some(home) => {
            if args.full {
                println!("note: CUDA_HOME is set, so --full is ignored");
            }
            user_toolkit(PathBuf::from(home))?
        }
        None => pinned_toolkit(workspace, &target.join("cuda-toolkit"), args.full)?,
    };
    println!(
        "CUDA toolkit: {} ({})",
        toolkit.root.display(),
        toolkit.release
    );
    if args.toolkit_only {
        return Ok(());
    }

    let target_dir = target.join("cuda");
    println!(
        "building a release `cv` with --features cuda for compute capability {} into {} \
         (a cold build takes 20 minutes or more on two cores)",
        args.compute_cap,
        target_dir.display()
    );
    let started = Instant::now();
    // One cargo run for both binaries: built separately, cv-model's example resolves other
    // dependency features than cv and rebuilds candle (15 more minutes cold).
    let mut what = vec!["-p", "cv-cli", "--bin", "cv", "--features", "cv-cli/cuda"];
    if args.bench {
        what.extend(["-p", "cv-model", "--example", "model_timing"]);
        what.extend(["--features", "cv-model/cuda"]);
    }
    let mut cargo = crate::cargo();
    cargo
        .current_dir(workspace)
        .args(["build", "--release"])
        .args(&what)
        .arg("--target-dir")
        .arg(&target_dir)
        .envs(build_env(&toolkit, &args.compute_cap)?);
    let status = cargo.status().context("cannot run cargo")?;
    ensure!(
        status.success(),
        "`cargo build --release {}` failed (toolkit {})",
        what.join(" "),
        toolkit.root.display()
    );
    let minutes = started.elapsed().as_secs_f64() / 60.0;

    let binary = target_dir.join("release").join("cv");
    let size = fs::metadata(&binary)
        .with_context(|| format!("the build did not write {}", binary.display()))?
        .len();
    println!(
        "\nbuilt {} ({:.1} MB) in {minutes:.1} min",
        binary.display(),
        size as f64 / 1e6
    );
    print_run_instructions(&binary, &toolkit);
    if args.bench {
        pack_gpu_check(&target_dir)?;
    }
    Ok(())
}

/// Packs `cv` and `model_timing` (gzipped: the two are over 100 MB, mostly PTX, which
/// compresses well) into `<target>/cuda/gpu-check/`, what `tools/cuda/gpu-check.sh` unpacks.
fn pack_gpu_check(target_dir: &Path) -> Result<()> {
    let release = target_dir.join("release");
    let dir = target_dir.join("gpu-check");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut total = 0;
    for binary in [release.join("cv"), release.join("examples/model_timing")] {
        let name = binary.file_name().context("a binary without a name")?;
        let packed = dir.join(name).with_extension("gz");
        let out = fs::File::create(&packed)
            .with_context(|| format!("cannot write {}", packed.display()))?;
        let status = Command::new("gzip")
            .args(["-6", "-c"])
            .arg(&binary)
            .stdout(out)
            .status()
            .context("cannot run gzip")?;
        ensure!(status.success(), "gzip of {} failed", binary.display());
        total += fs::metadata(&packed)?.len();
    }
    println!(
        "\npacked cv and model_timing into {} ({:.1} MB). On a GPU machine with PyTorch (CUDA \
         13), from the repository root with that folder in place:\n\n  bash tools/cuda/gpu-check.sh",
        dir.display(),
        total as f64 / 1e6
    );
    Ok(())
}

/// The environment of the CUDA build: the toolkit first on every search path, the compute
/// capability, and the CUDA version for cudarc (so it need not ask nvcc).
fn build_env(
    toolkit: &Toolkit,
    compute_cap: &str,
) -> Result<Vec<(&'static str, std::ffi::OsString)>> {
    let bin = toolkit.root.join("bin");
    let mut path = vec![bin.clone()];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).context("PATH cannot hold the toolkit's bin folder")?;
    let root = toolkit.root.as_os_str().to_owned();
    Ok(vec![
        ("CUDA_HOME", root.clone()),
        ("CUDA_PATH", root.clone()),
        ("CUDA_ROOT", root),
        // cudaforge prefers $NVCC over CUDA_HOME: never let a stand-in (tools/cuda/nvcc) win.
        ("NVCC", bin.join("nvcc").into_os_string()),
        ("PATH", path),
        ("CUDA_COMPUTE_CAP", compute_cap.into()),
        ("CUDARC_CUDA_VERSION", toolkit.cudarc_version.clone().into()),
    ])
}

fn print_run_instructions(binary: &Path, toolkit: &Toolkit) {
    let lib = toolkit.root.join("lib");
    println!(
        "\nIt runs only where an NVIDIA driver is installed (for libcuda.so.1) and the CUDA 13 \
         libraries {RUNTIME_LIBS} are on the loader path; without them it does not start at all."
    );
    if toolkit.pinned && toolkit.full {
        println!(
            "This toolkit has all of them but libcuda.so.1, which comes with the driver:\n\n  \
             LD_LIBRARY_PATH={} {} train --config configs/default.toml --device cuda",
            lib.display(),
            binary.display()
        );
    } else if toolkit.pinned {
        println!(
            "This toolkit has only libcudart (its cuBLAS and cuRAND are link-time stubs, never to \
             be loaded). Use the GPU machine's own CUDA 13 libraries (a CUDA 13 toolkit, or \
             PyTorch's `site-packages/nvidia/cu13/lib`), or rebuild with --full and put {} on \
             LD_LIBRARY_PATH:\n\n  LD_LIBRARY_PATH=/path/to/cuda-13/lib {} train --config \
             configs/default.toml --device cuda",
            lib.display(),
            binary.display()
        );
    } else {
        println!(
            "For example:\n\n  LD_LIBRARY_PATH={} {} train --config configs/default.toml \
             --device cuda",
            [lib.clone(), toolkit.root.join("lib64")]
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
            binary.display()
        );
    }
    // What the loader would find here, for the libraries that matter.
    if let Ok(out) = Command::new("ldd").arg(binary).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| ["libcu", "libnvrtc"].iter().any(|k| l.contains(k)))
            .collect();
        if !lines.is_empty() {
            println!("\nldd on this machine:");
            for line in lines {
                println!("  {line}");
            }
        }
    }
}

/// The user's own toolkit: `$CUDA_HOME/bin/nvcc` must exist and answer.
fn user_toolkit(root: PathBuf) -> Result<Toolkit> {
    let nvcc = root.join("bin").join("nvcc");
    ensure!(
        nvcc.is_file(),
        "CUDA_HOME is {} but {} does not exist: point CUDA_HOME at a CUDA toolkit, or unset it \
         to use the pinned CUDA 13.0 toolkit from PyPI",
        root.display(),
        nvcc.display()
    );
    let release = nvcc_release(&nvcc)?;
    let cudarc_version = match std::env::var("CUDARC_CUDA_VERSION") {
        Ok(v) if !v.is_empty() => v,
        _ => cudarc_version(&release)
            .with_context(|| format!("cannot read a CUDA version from {nvcc:?}: {release:?}"))?,
    };
    Ok(Toolkit {
        root,
        cudarc_version,
        release,
        pinned: false,
        full: false,
    })
}

/// `nvcc --version`'s release line, e.g. `Cuda compilation tools, release 13.0, V13.0.88`.
fn nvcc_release(nvcc: &Path) -> Result<String> {
    let out = Command::new(nvcc)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", nvcc.display()))?;
    ensure!(
        out.status.success(),
        "{} --version failed: {}",
        nvcc.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("release"))
        .map(|l| l.trim().to_owned())
        .with_context(|| format!("{} --version printed no release: {text}", nvcc.display()))
}

/// `release 12.4, V12.4.131` → `12040`, as cudarc names CUDA versions.
fn cudarc_version(release: &str) -> Option<String> {
    let version = release.split("release ").nth(1)?.split(',').next()?.trim();
    let (major, minor) = version.split_once('.')?;
    let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
    Some(format!("{major}0{minor}0"))
}

/// The pinned toolkit under `dir`, installed and laid out unless it already is.
fn pinned_toolkit(workspace: &Path, dir: &Path, full: bool) -> Result<Toolkit> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        println!(
            "creating a Python virtual environment in {}",
            venv.display()
        );
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context(
                "cannot run python3, needed to install the CUDA toolkit from PyPI: install \
                 Python 3 (with its venv module), or set CUDA_HOME to a CUDA toolkit",
            )?;
        ensure!(
            status.success(),
            "`python3 -m venv {}` failed (on Debian/Ubuntu: apt install python3-venv)",
            venv.display()
        );
    }

    // Install what is missing; a record of what was installed makes this a no-op next time.
    let record = dir.join("installed.txt");
    let installed = fs::read_to_string(&record).unwrap_or_default();
    let mut wanted: Vec<&str> = TOOLKIT.to_vec();
    if full {
        wanted.extend_from_slice(FULL_EXTRA);
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|p| !installed.lines().any(|l| l == *p))
        .collect();
    if !missing.is_empty() {
        println!("installing from PyPI: {}", missing.join(" "));
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--disable-pip-version-check",
            ])
            .args(&missing)
            .status()
            .with_context(|| format!("cannot run {}", python.display()))?;
        ensure!(
            status.success(),
            "pip could not install the CUDA toolkit wheels (is PyPI reachable?): {}",
            missing.join(" ")
        );
        let mut all: Vec<&str> = installed.lines().filter(|l| !l.is_empty()).collect();
        all.extend(missing);
        all.sort_unstable();
        all.dedup();
        fs::write(&record, all.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", record.display()))?;
    }
    let installed = fs::read_to_string(&record).unwrap_or_default();
    let has_full = FULL_EXTRA
        .iter()
        .all(|p| installed.lines().any(|l| l == *p));

    let cu13 = site_packages(&venv)?.join("nvidia").join("cu13");
    ensure!(
        cu13.join("bin").join("nvcc").is_file(),
        "{} has no bin/nvcc: remove {} and run again",
        cu13.display(),
        dir.display()
    );
    let root = dir.join("cuda");
    lay_out(&cu13, &root)?;
    let stubs_needed: Vec<_> = STUBS
        .iter()
        .filter(|(_, lib, _, _)| {
            *lib == "cuda" || !root.join("lib").join(format!("lib{lib}.so")).exists()
        })
        .collect();
    write_stubs(workspace, dir, &root, &stubs_needed)?;

    let release = nvcc_release(&root.join("bin").join("nvcc"))?;
    write_env_sh(dir, &root)?;
    Ok(Toolkit {
        root,
        cudarc_version: PINNED_CUDARC_VERSION.to_owned(),
        release,
        pinned: true,
        full: has_full,
    })
}

/// `venv/lib/python3.X/site-packages`.
fn site_packages(venv: &Path) -> Result<PathBuf> {
    let lib = venv.join("lib");
    fs::read_dir(&lib)
        .with_context(|| format!("cannot read {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .find(|p| {
            p.parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
                && p.is_dir()
        })
        .with_context(|| format!("no python3*/site-packages in {}", lib.display()))
}

/// A `CUDA_HOME`-shaped tree of links into the wheels' `nvidia/cu13`, with the unversioned
/// `libX.so` names the linker looks for (the wheels have only `libX.so.N`).
fn lay_out(cu13: &Path, root: &Path) -> Result<()> {
    fs::create_dir_all(root.join("lib").join("stubs"))
        .with_context(|| format!("cannot create {}", root.display()))?;
    for dir in ["bin", "include", "nvvm"] {
        symlink(&cu13.join(dir), &root.join(dir))?;
    }
    let mut libs: Vec<PathBuf> = fs::read_dir(cu13.join("lib"))
        .with_context(|| format!("cannot read {}", cu13.join("lib").display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".so."))
        })
        .collect();
    libs.sort();
    for lib in &libs {
        let name = lib.file_name().context("a library has a name")?;
        symlink(lib, &root.join("lib").join(name))?;
    }
    for name in ["cudart", "cublas", "cublasLt", "curand", "nvrtc"] {
        let prefix = format!("lib{name}.so.");
        if let Some(versioned) = libs
            .iter()
            .filter_map(|p| p.file_name())
            .find(|n| n.to_string_lossy().starts_with(&prefix))
        {
            symlink(
                Path::new(versioned),
                &root.join("lib").join(format!("lib{name}.so")),
            )?;
            // A stub left from a build without --full would only shadow nothing (lib/ comes
            // first), but keep the tree honest.
            let stale = root.join("lib").join("stubs").join(format!("lib{name}.so"));
            if stale.exists() {
                fs::remove_file(&stale)
                    .with_context(|| format!("cannot remove {}", stale.display()))?;
            }
        }
    }
    Ok(())
}

/// Makes `link` a symbolic link to `target` unless it already is one.
fn symlink(target: &Path, link: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        fs::remove_file(link).with_context(|| format!("cannot replace {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))
}

/// Link-time stub libraries in `root/lib/stubs`: every function cudarc declares for the library,
/// each returning an error code. Recompiled only when the generated source changes.
fn write_stubs(
    workspace: &Path,
    dir: &Path,
    root: &Path,
    stubs: &[&(&str, &str, &str, i32)],
) -> Result<()> {
    let cudarc = cudarc_source(workspace)?;
    let src_dir = dir.join("stub-src");
    fs::create_dir_all(&src_dir).with_context(|| format!("cannot create {}", src_dir.display()))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    for (module, lib, soname, value) in stubs {
        let bindings = cudarc.join("src").join(module).join("sys").join("mod.rs");
        let text = fs::read_to_string(&bindings)
            .with_context(|| format!("cannot read cudarc's bindings {}", bindings.display()))?;
        let mut names: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(char::is_whitespace))
            .filter_map(|l| l.trim_start().strip_prefix("fn "))
            .filter_map(|l| l.split_once('(').map(|(name, _)| name))
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        names.sort_unstable();
        names.dedup();
        ensure!(
            !names.is_empty(),
            "no functions found in {}",
            bindings.display()
        );
        let mut source = format!(
            "/* link-time stub for {soname}, from {} */\n",
            bindings.display()
        );
        for name in names {
            writeln!(source, "int {name}(void){{return {value};}}").expect("writing to a String");
        }
        let c = src_dir.join(format!("{lib}.c"));
        let so = root.join("lib").join("stubs").join(format!("lib{lib}.so"));
        if so.exists() && fs::read_to_string(&c).is_ok_and(|old| old == source) {
            continue;
        }
        fs::write(&c, &source).with_context(|| format!("cannot write {}", c.display()))?;
        let status = Command::new(&cc)
            .args(["-shared", "-fPIC"])
            .arg(format!("-Wl,-soname,{soname}"))
            .arg("-o")
            .arg(&so)
            .arg(&c)
            .status()
            .with_context(|| format!("cannot run the C compiler {cc:?} (set CC to another)"))?;
        ensure!(
            status.success(),
            "{cc} could not compile the stub {}",
            c.display()
        );
    }
    Ok(())
}

/// cudarc's source folder, as cargo resolves it for `cv-cli --features cuda`.
fn cudarc_source(workspace: &Path) -> Result<PathBuf> {
    let rustc = Command::new(crate::rustc())
        .arg("-vV")
        .output()
        .context("cannot run rustc")?;
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV printed no host")?;
    let out = crate::cargo()
        .current_dir(workspace)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--features",
            "cv-cli/cuda",
        ])
        .args(["--filter-platform", &host])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "cudarc")
        .and_then(|p| p["manifest_path"].as_str())
        .context("cudarc is not among cv-cli's dependencies with --features cuda")?;
    Ok(Path::new(manifest)
        .parent()
        .context("cudarc's manifest has a folder")?
        .to_owned())
}

/// `env.sh` beside the toolkit, for building by hand: `. target/cuda-toolkit/env.sh`.
fn write_env_sh(dir: &Path, root: &Path) -> Result<()> {
    let r = root.display();
    let text = format!(
        "# Written by `cargo xtask build-cuda`: source it to build with this toolkit by hand.\n\
         export CUDA_HOME={r} CUDA_PATH={r} CUDA_ROOT={r} NVCC={r}/bin/nvcc PATH={r}/bin:$PATH\n\
         export CUDA_COMPUTE_CAP=${{CUDA_COMPUTE_CAP:-90}} CUDARC_CUDA_VERSION={PINNED_CUDARC_VERSION}\n"
    );
    let path = dir.join("env.sh");
    if fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cuda_versions_as_cudarc_names_them() {
        assert_eq!(
            cudarc_version("Cuda compilation tools, release 13.0, V13.0.88").as_deref(),
            Some("13000")
        );
        assert_eq!(
            cudarc_version("Cuda compilation tools, release 12.4, V12.4.131").as_deref(),
            Some("12040")
        );
        assert_eq!(cudarc_version("no version here"), None);
    }

    #[test]
    fn checks_compute_capabilities() {
        assert_eq!(parse_compute_cap("90").as_deref(), Ok("90"));
        assert_eq!(parse_compute_cap("90a").as_deref(), Ok("90a"));
        assert!(parse_compute_cap("sm_90").is_err());
        assert!(parse_compute_cap("9").is_err());
    }
}
