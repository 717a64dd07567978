//! The packaging files agree with Cargo.toml and with each other, so a release cannot ship a
//! launcher for another version or miss a platform: the npm launcher's version and platform
//! packages, the release targets (dist-workspace.toml) against the npm and PyPI jobs, the
//! wheel's settings, and the container image's user and command. `.ci/packaging` builds and
//! runs the packages themselves.

use std::path::Path;

use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn release_targets() -> Vec<String> {
    let dist: toml::Value = toml::from_str(&read("dist-workspace.toml")).unwrap();
    dist["dist"]["targets"]
        .as_array()
        .expect("dist.targets")
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn npm_launcher_matches_the_crate_version_and_platforms() {
    let pkg: Value = serde_json::from_str(&read("npm/acp-relay/package.json")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(pkg["name"], "acp-relay");
    assert_eq!(
        pkg["version"], version,
        "bump npm/acp-relay with Cargo.toml"
    );
    assert_eq!(pkg["bin"]["acp-relay"], "bin/acp-relay.js");
    assert!(
        pkg.get("scripts").is_none(),
        "no install scripts (npm 11 blocks them by default)"
    );
    let deps = pkg["optionalDependencies"]
        .as_object()
        .expect("optional deps");
    let mut names: Vec<&str> = deps.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "acp-relay-darwin-arm64",
            "acp-relay-darwin-x64",
            "acp-relay-linux-arm64",
            "acp-relay-linux-x64",
            "acp-relay-win32-x64"
        ]
    );
    for (name, v) in deps {
        assert_eq!(v, version, "{name}: the launcher pins its own version");
    }
}

#[test]
fn every_release_target_is_packaged_for_npm_and_pypi() {
    let targets = release_targets();
    assert_eq!(targets.len(), 5, "{targets:?}");
    let stage = read("npm/stage.js");
    let pypi = read(".github/workflows/publish-pypi.yml");
    let npm = read(".github/workflows/publish-npm.yml");
    for target in &targets {
        assert!(
            stage.contains(&format!("'{target}'")),
            "npm/stage.js maps {target}"
        );
        assert!(
            pypi.contains(&format!("target: {target}")),
            "publish-pypi.yml builds a wheel for {target}"
        );
        assert!(npm.contains(target), "publish-npm.yml stages {target}");
    }
    for linux in targets.iter().filter(|t| t.contains("linux")) {
        assert!(linux.ends_with("-musl"), "{linux}: static musl on Linux");
    }
}

#[test]
fn wheel_and_image_settings() {
    let py: toml::Value = toml::from_str(&read("pyproject.toml")).unwrap();
    assert_eq!(py["project"]["name"].as_str(), Some("acp-relay"));
    assert_eq!(
        py["project"]["dynamic"].as_array().unwrap()[0].as_str(),
        Some("version"),
        "the wheel's version comes from Cargo.toml"
    );
    assert_eq!(py["tool"]["maturin"]["bindings"].as_str(), Some("bin"));
    assert_eq!(py["tool"]["maturin"]["profile"].as_str(), Some("dist"));

    let docker = read("docker/Dockerfile");
    let line = |key: &str| {
        docker
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("Dockerfile has {key}"))
            .to_owned()
    };
    assert_eq!(line("USER "), "USER 65532:65532", "not root");
    assert_eq!(line("CMD "), r#"CMD ["serve"]"#);
    assert!(line("ENV ").contains("ACP_DATA_DIR=/data"));
    assert!(line("VOLUME ").contains("/data"));
}
