//! What the scenarios check on the host: pod cgroups, shim processes, spec annotations, errors.
#![allow(unused_imports)] // one prelude for the parts of the tool
use super::*;

/// Removes the cgroup parent directory of pod `name` (and the common parent once empty), if it
/// exists; retried for 10 s (a runtime may still be removing the containers' cgroups).
pub(crate) async fn remove_pod_cgroup(name: &str) -> Result<()> {
    let dir = Path::new(CGROUP_ROOT).join(POD_NAMESPACE).join(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if Instant::now() >= deadline => {
                let left: Vec<String> = std::fs::read_dir(&dir)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter(|e| e.path().is_dir())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                bail!(
                    "pod cgroup {} not removable ({e}): cgroups left in it: {left:?}",
                    dir.display()
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    // The common parent: only once no other pod's is in it.
    let _ = std::fs::remove_dir(Path::new(CGROUP_ROOT).join(POD_NAMESPACE));
    Ok(())
}

/// The containerd shims running (processes whose argv[0]'s file name starts with
/// `containerd-shim`), as their command lines.
pub(crate) fn shims() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = argv
            .first()
            .and_then(|a0| Path::new(a0).file_name())
            .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim"));
        if is_shim {
            out.push(argv);
        }
    }
    out
}

/// The shims serving `ids` (`-id <one of ids>` on their command line).
pub(crate) fn shims_of(ids: &[&str]) -> Vec<Vec<String>> {
    shims()
        .into_iter()
        .filter(|argv| {
            argv.windows(2)
                .any(|w| w[0] == "-id" && ids.contains(&w[1].as_str()))
        })
        .collect()
}

/// Checks that each pod of `pods` has exactly one shim (`-id <pod id>`) and that no container of
/// theirs has one of its own.
pub(crate) fn one_shim_per_pod(pods: &[&str], containers: &[&str]) -> Result<String> {
    for p in pods {
        let n = shims_of(&[p]).len();
        ensure!(n == 1, "{n} shims for pod {}: {:?}", short(p), shims());
    }
    let own = shims_of(containers);
    ensure!(
        own.is_empty(),
        "containers with a shim of their own: {own:?}"
    );
    let example = shims_of(&pods[..1])
        .first()
        .map(|a| a.join(" "))
        .unwrap_or_default();
    Ok(format!(
        "{} pod(s), one shim each, e.g. `{example}`",
        pods.len()
    ))
}

/// The annotations of the OCI spec containerd wrote for `id` (its bundle's config.json).
pub(crate) fn spec_annotations(
    bundle_root: &Path,
    id: &str,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let path = bundle_root.join(id).join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let spec: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(spec
        .get("annotations")
        .and_then(|a| a.as_object())
        .cloned()
        .unwrap_or_default())
}

pub(crate) fn annotation<'a>(
    a: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> &'a str {
    a.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

pub(crate) fn state_name(s: i32) -> String {
    cri::ContainerState::try_from(s)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("state {s}"))
}

pub(crate) fn pod_state_name(s: i32) -> String {
    cri::PodSandboxState::try_from(s)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("state {s}"))
}

/// Fails unless the call failed with code `want`; the context: the error's code and text.
pub(crate) fn expect_error<T: std::fmt::Debug>(
    r: Result<T, Status>,
    want: Option<Code>,
    mentions: &str,
) -> Result<String> {
    match r {
        Ok(v) => bail!("succeeded: {v:?}"),
        Err(s) => {
            if let Some(want) = want {
                ensure!(
                    s.code() == want,
                    "wanted code {want:?}, got {}",
                    status_text(&s)
                );
            }
            ensure!(
                s.message().contains(mentions),
                "the error does not mention {mentions:?}: {}",
                status_text(&s)
            );
            Ok(format!("error {}", status_text(&s)))
        }
    }
}
