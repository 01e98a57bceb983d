//! `deploy/` checked offline as an operator would before applying it: the
//! Kubernetes manifests pass `kubernetes-validate --strict` (the API's own schemas),
//! carry what the README relies on (probes on `/readyz` and `/healthz` at the admin
//! port, a preStop, a termination grace above the config's shutdown grace), and the
//! ConfigMap's `tunnelscope.toml` passes `tunnelscope check`; the systemd unit
//! checks before it reloads with SIGHUP; the Dockerfile builds with `--locked` from
//! the files it copies.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The interop venv's python with PyYAML and kubernetes-validate; None (or a
/// failure under CI, where `.ci/run` installs them) when missing.
fn python() -> Option<PathBuf> {
    let venv = repo("tests/interop/.venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let ok = Command::new(&python)
        .args(["-c", "import yaml, kubernetes_validate"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let install = "tests/interop/.venv/bin/pip install pyyaml kubernetes-validate";
    if std::env::var_os("CI").is_some() {
        panic!("PyYAML and kubernetes-validate are missing under CI: {install}");
    }
    eprintln!("skipping: PyYAML and kubernetes-validate are not installed ({install})");
    None
}

/// Every document of the manifest, as JSON.
fn manifests(python: &Path) -> Vec<Value> {
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(repo("deploy/kubernetes/tunnelscope.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_kubernetes_manifests_validate_and_carry_what_the_readme_relies_on() {
    let Some(python) = python() else { return };
    let bin = python.parent().unwrap().join("kubernetes-validate");
    let validator = if bin.exists() {
        bin
    } else {
        PathBuf::from("kubernetes-validate")
    };
    let out = Command::new(&validator)
        .arg("--strict")
        .arg(repo("deploy/kubernetes/tunnelscope.yaml"))
        .output()
        .expect("run kubernetes-validate");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate:\n{report}");

    let docs = manifests(&python);
    let config = kind(&docs, "ConfigMap")[0]["data"]["tunnelscope.toml"]
        .as_str()
        .expect("the ConfigMap holds tunnelscope.toml")
        .to_string();
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("tunnelscope.toml");
    std::fs::write(&file, &config).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_tunnelscope"))
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "tunnelscope check on the ConfigMap's file: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let parsed: toml::Value = toml::from_str(&config).unwrap();
    let admin = parsed["admin"]["bind"].as_str().unwrap();
    let admin_port: u64 = admin.rsplit(':').next().unwrap().parse().unwrap();
    let grace = parsed["timeouts"]["shutdown_grace"]
        .as_str()
        .map(|s| s.trim_end_matches('s').parse::<u64>().unwrap())
        .unwrap_or(10);

    let deploy = kind(&docs, "Deployment")[0];
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let port = &get["port"];
        let named = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *port || p["containerPort"] == *port)
            .unwrap_or_else(|| panic!("{probe} port {port} is not a container port"));
        assert_eq!(
            named["containerPort"], admin_port,
            "{probe} goes to the admin API"
        );
    }
    let pre_stop = &container["lifecycle"]["preStop"];
    assert!(!pre_stop.is_null(), "a preStop hook");
    let pause = pre_stop["sleep"]["seconds"].as_u64().unwrap_or(0);
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        termination > pause + grace,
        "terminationGracePeriodSeconds {termination} must exceed preStop {pause} + shutdown_grace {grace}"
    );
    // The backends are found through a headless Service's DNS name.
    let headless = kind(&docs, "Service")
        .into_iter()
        .find(|s| s["spec"]["clusterIP"] == "None")
        .expect("a headless Service for the backends");
    let name = headless["metadata"]["name"].as_str().unwrap();
    let servers = parsed["pool"]
        .as_table()
        .unwrap()
        .values()
        .flat_map(|p| p["server"].as_array().unwrap().iter())
        .map(|s| s["addr"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(
        servers.iter().any(|a| a.starts_with(&format!("{name}."))),
        "a pool server addressed by the headless Service's name: {servers:?}"
    );
}

#[test]
fn the_systemd_unit_checks_the_file_and_reloads_with_sighup() {
    let unit = std::fs::read_to_string(repo("deploy/systemd/tunnelscope.service")).unwrap();
    let lines: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    let has = |want: &str| lines.iter().any(|l| l.trim() == want);
    assert!(
        has("Type=notify"),
        "the upgraded process is taken as the main one"
    );
    assert!(has("NotifyAccess=all"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("ExecStartPre=") && l.contains("tunnelscope check")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("ExecReload=") && l.contains("tunnelscope check")));
    assert!(has("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("ExecStart=") && l.contains("--headless")));
}

#[test]
fn the_dockerfile_builds_locked_from_the_files_it_copies() {
    let docker = std::fs::read_to_string(repo("deploy/Dockerfile")).unwrap();
    assert!(docker.contains("cargo build --release --locked"));
    // The build context is what the COPY lines bring: the manifest must resolve
    // from those alone, with the lock file as it is.
    let ctx = tempfile::TempDir::new().unwrap();
    for line in docker
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        for src in &parts[..parts.len() - 1] {
            let from = repo(src);
            let to = ctx.path().join(src);
            copy(&from, &to);
        }
    }
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--locked",
            "--offline",
            "--format-version",
            "1",
            "--no-deps",
        ])
        .current_dir(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata in the Docker build context: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}
