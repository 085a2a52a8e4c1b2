//! The `version` and `pod` scenarios.
#![allow(unused_imports)] // one prelude for the parts of the tool
use super::*;

// --- scenarios ---------------------------------------------------------------------------------

pub(crate) async fn scenario_version(cri: &Cri, r: &mut Report) {
    let res = cri.version().await;
    r.check(
        "cri-version-v1",
        res.map_err(|s| anyhow!("Version: {}", status_text(&s)))
            .and_then(|v| {
                ensure!(
                    v.runtime_api_version == "v1",
                    "runtime_api_version {:?}",
                    v.runtime_api_version
                );
                Ok(format!(
                    "{} {}, CRI {}",
                    v.runtime_name, v.runtime_version, v.runtime_api_version
                ))
            }),
    );
}

pub(crate) async fn scenario_pod(cri: &Cri, r: &mut Report) {
    let name = "sp-pod";
    let volume = cri.work.join("pod-volume");
    if let Err(e) = std::fs::create_dir_all(&volume) {
        r.check("pod-volume-dir", Err(anyhow!("{}: {e}", volume.display())));
        return;
    }
    let pcfg = cri.pod_config(name);
    let t = Instant::now();
    let Some(pod) = r.need(
        "pod-run-pod-sandbox",
        async {
            let id = cri
                .run_pod(&pcfg)
                .await
                .map_err(|s| anyhow!("RunPodSandbox: {}", status_text(&s)))?;
            let st = cri
                .pod_status(&id)
                .await
                .map_err(|s| anyhow!("PodSandboxStatus: {}", status_text(&s)))?;
            ensure!(
                st.state == cri::PodSandboxState::SandboxReady as i32,
                "pod {} is {}",
                short(&id),
                pod_state_name(st.state)
            );
            let ip = st.network.map(|n| n.ip).unwrap_or_default();
            let ctx = format!(
                "pod {} ready in {} ms, ip {ip:?}",
                short(&id),
                ms(t.elapsed())
            );
            Ok((id, ctx))
        }
        .await,
    ) else {
        return;
    };
    pod_body(cri, r, &pod, &pcfg, &volume).await;

    // Teardown, whatever happened above.
    r.check(
        "pod-stop-pod-sandbox",
        async {
            let containers = cri.list_containers(Some(&pod)).await?;
            cri.stop_pod(&pod).await?;
            let st = cri.pod_status(&pod).await?;
            let mut states = vec![format!("pod {}", pod_state_name(st.state))];
            let mut ok = st.state == cri::PodSandboxState::SandboxNotready as i32;
            for c in &containers {
                let cs = cri.container_status(&c.id).await?;
                ok &= cs.state == cri::ContainerState::ContainerExited as i32;
                states.push(format!(
                    "{} {} exit {}",
                    short(&c.id),
                    state_name(cs.state),
                    cs.exit_code
                ));
            }
            Ok::<_, Status>((ok, states.join(", ")))
        }
        .await
        .map_err(|s| anyhow!("{}", status_text(&s)))
        .and_then(|(ok, states)| {
            ensure!(ok, "not all stopped: {states}");
            Ok(states)
        }),
    );
    r.check(
        "pod-remove-pod-sandbox",
        async {
            let containers = cri
                .list_containers(Some(&pod))
                .await
                .map_err(|s| anyhow!("{}", status_text(&s)))?;
            cri.remove_pod(&pod)
                .await
                .map_err(|s| anyhow!("RemovePodSandbox: {}", status_text(&s)))?;
            let gone = expect_error(cri.pod_status(&pod).await, Some(Code::NotFound), "")
                .context("PodSandboxStatus after RemovePodSandbox")?;
            for c in &containers {
                expect_error(cri.container_status(&c.id).await, Some(Code::NotFound), "")
                    .with_context(|| {
                        format!("ContainerStatus {} after RemovePodSandbox", short(&c.id))
                    })?;
            }
            remove_pod_cgroup(name).await?;
            Ok(format!(
                "pod and its {} containers gone (PodSandboxStatus: {gone})",
                containers.len()
            ))
        }
        .await,
    );
    r.check("pod-list-empty", nothing_listed(cri).await);
    let _ = std::fs::remove_dir_all(&volume);
}

/// ListPodSandbox and ListContainers list nothing.
pub(crate) async fn nothing_listed(cri: &Cri) -> Result<String> {
    let pods = cri
        .list_pods()
        .await
        .map_err(|s| anyhow!("ListPodSandbox: {}", status_text(&s)))?;
    let containers = cri
        .list_containers(None)
        .await
        .map_err(|s| anyhow!("ListContainers: {}", status_text(&s)))?;
    ensure!(
        pods.is_empty() && containers.is_empty(),
        "listed: pods {:?}, containers {:?}",
        pods.iter()
            .map(|p| (short(&p.id), pod_state_name(p.state)))
            .collect::<Vec<_>>(),
        containers
            .iter()
            .map(|c| (short(&c.id), state_name(c.state)))
            .collect::<Vec<_>>()
    );
    Ok(String::new())
}

/// The `pod` scenario's checks between RunPodSandbox and StopPodSandbox.
pub(crate) async fn pod_body(
    cri: &Cri,
    r: &mut Report,
    pod: &str,
    pcfg: &cri::PodSandboxConfig,
    volume: &Path,
) {
    let t = Instant::now();
    let Some((c1, c2)) = r.need(
        "pod-create-and-start-two-containers",
        async {
            let c1cfg = cri.container_config("c1", &["sleep", SLEEP_C1], Some(volume));
            let c2cfg = cri.container_config("c2", &["sleep", SLEEP_C2], Some(volume));
            let c1 = cri.create_and_start(pod, pcfg, &c1cfg).await?;
            let c2 = cri.create_and_start(pod, pcfg, &c2cfg).await?;
            for id in [&c1, &c2] {
                let st = cri
                    .container_status(id)
                    .await
                    .map_err(|s| anyhow!("ContainerStatus: {}", status_text(&s)))?;
                ensure!(
                    st.state == cri::ContainerState::ContainerRunning as i32,
                    "container {} is {}",
                    short(id),
                    state_name(st.state)
                );
            }
            let ctx = format!(
                "c1 {} c2 {} running in {} ms",
                short(&c1),
                short(&c2),
                ms(t.elapsed())
            );
            Ok(((c1, c2), ctx))
        }
        .await,
    ) else {
        return;
    };

    r.check(
        "pod-one-shim-for-the-pod",
        one_shim_per_pod(&[pod], &[&c1, &c2]),
    );

    // What containerd tells the runtime (its shim) about each container: the OCI annotations.
    r.check(
        "pod-spec-annotations",
        (|| {
            let sandbox = spec_annotations(&cri.bundle_root, pod)?;
            println!("spec sandbox annotations {}", serde_json::Value::Object(sandbox.clone()));
            ensure!(
                annotation(&sandbox, "io.kubernetes.cri.container-type") == "sandbox",
                "sandbox spec: container-type {:?}",
                annotation(&sandbox, "io.kubernetes.cri.container-type")
            );
            for c in [&c1, &c2] {
                let a = spec_annotations(&cri.bundle_root, c)?;
                println!("spec container {} annotations {}", short(c), serde_json::Value::Object(a.clone()));
                ensure!(
                    annotation(&a, "io.kubernetes.cri.container-type") == "container"
                        && annotation(&a, "io.kubernetes.cri.sandbox-id") == pod,
                    "container {} spec: container-type {:?}, sandbox-id {:?}",
                    short(c),
                    annotation(&a, "io.kubernetes.cri.container-type"),
                    annotation(&a, "io.kubernetes.cri.sandbox-id")
                );
            }
            Ok("sandbox: container-type=sandbox; containers: container-type=container, sandbox-id=<pod>".to_owned())
        })(),
    );

    r.check(
        "pod-exec-sync-exact-stdout",
        async {
            let x = cri
                .exec_sync(&c1, &["echo", "hello from c1"])
                .await
                .map_err(|s| anyhow!("ExecSync: {}", status_text(&s)))?;
            ensure!(
                x.exit_code == 0 && x.stdout == b"hello from c1\n" && x.stderr.is_empty(),
                "exit {}, stdout {:?}, stderr {:?}",
                x.exit_code,
                String::from_utf8_lossy(&x.stdout),
                String::from_utf8_lossy(&x.stderr)
            );
            Ok("exit 0, stdout \"hello from c1\\n\"".to_owned())
        }
        .await,
    );
    r.check(
        "pod-exec-sync-exit-code-3",
        async {
            let x = cri
                .exec_sync(&c2, &["sh", "-c", "echo out; echo err >&2; exit 3"])
                .await
                .map_err(|s| anyhow!("ExecSync: {}", status_text(&s)))?;
            ensure!(
                x.exit_code == 3 && x.stdout == b"out\n" && x.stderr == b"err\n",
                "exit {}, stdout {:?}, stderr {:?}",
                x.exit_code,
                String::from_utf8_lossy(&x.stdout),
                String::from_utf8_lossy(&x.stderr)
            );
            Ok("exit 3, stdout \"out\\n\", stderr \"err\\n\"".to_owned())
        }
        .await,
    );

    // Shared pid namespace: each container sees the other's sleep.
    let procs = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$f; echo; done";
    r.check(
        "pod-shared-pid-namespace",
        async {
            let in_c1 = cri.sh(&c1, procs).await?;
            let in_c2 = cri.sh(&c2, procs).await?;
            let sees = |out: &str, arg: &str| out.lines().any(|l| l.trim() == format!("sleep {arg}"));
            ensure!(
                sees(&in_c1, SLEEP_C2) && sees(&in_c2, SLEEP_C1),
                "c1 sees {:?}; c2 sees {:?}",
                in_c1.lines().collect::<Vec<_>>(),
                in_c2.lines().collect::<Vec<_>>()
            );
            Ok(format!(
                "c1 sees c2's `sleep {SLEEP_C2}` and c2 sees c1's `sleep {SLEEP_C1}` ({} processes)",
                in_c1.lines().filter(|l| !l.trim().is_empty()).count()
            ))
        }
        .await,
    );

    // The volume: written in c1, read in c2 and on the host.
    let token = format!(
        "token-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    r.check(
        "pod-shared-volume",
        async {
            cri.sh(&c1, &format!("echo {token} >/shared/from-c1"))
                .await?;
            let in_c2 = cri.sh(&c2, "cat /shared/from-c1").await?;
            let host_path = volume.join("from-c1");
            let on_host = std::fs::read_to_string(&host_path)
                .with_context(|| format!("{}", host_path.display()))?;
            ensure!(
                in_c2.trim_end() == token && on_host.trim_end() == token,
                "wrote {token:?} in c1; c2 read {in_c2:?}, the host {on_host:?}"
            );
            Ok(format!("{token} written in c1, read in c2 and on the host"))
        }
        .await,
    );

    r.check(
        "pod-container-stats-memory",
        async {
            let resp = cri
                .rt
                .clone()
                .container_stats(cri::ContainerStatsRequest {
                    container_id: c1.clone(),
                })
                .await
                .map_err(|s| anyhow!("ContainerStats: {}", status_text(&s)))?
                .into_inner();
            cri.json("ContainerStatsResponse", &resp);
            let stats = resp.stats.context("no stats")?;
            let id = stats
                .attributes
                .as_ref()
                .map(|a| a.id.as_str())
                .unwrap_or_default();
            ensure!(id == c1, "stats of {id:?}, not c1");
            let mem = stats.memory.context("no memory stats")?;
            let ws = mem.working_set_bytes.map(|v| v.value).unwrap_or_default();
            let usage = mem.usage_bytes.map(|v| v.value).unwrap_or_default();
            ensure!(ws > 0, "working set {ws} bytes (usage {usage})");
            let cpu = stats
                .cpu
                .and_then(|c| c.usage_core_nano_seconds)
                .map(|v| v.value);
            Ok(format!(
                "working set {ws} bytes, usage {usage} bytes, cpu {cpu:?} ns"
            ))
        }
        .await,
    );

    // Resources: the container's own cgroup files, before and after the update. (Its cgroup
    // v2 path, from /proc/self/cgroup, under /sys/fs/cgroup: with a cgroup namespace the path is
    // `/`; without one, runc may mount the container's own cgroup at /sys/fs/cgroup.)
    let cg = "p=$(sed -n 's/^0:://p' /proc/self/cgroup); d=/sys/fs/cgroup$p; \
              [ -f $d/memory.max ] || d=/sys/fs/cgroup; cat $d/memory.max $d/cpu.max";
    r.check(
        "pod-update-resources-in-cgroup",
        async {
            let before = cri.sh(&c1, cg).await?;
            let req = cri::UpdateContainerResourcesRequest {
                container_id: c1.clone(),
                linux: Some(cri::LinuxContainerResources {
                    cpu_period: CPU_PERIOD,
                    cpu_quota: CPU_QUOTA,
                    memory_limit_in_bytes: MEMORY_LIMIT,
                    ..Default::default()
                }),
                ..Default::default()
            };
            cri.json("UpdateContainerResourcesRequest", &req);
            cri.rt
                .clone()
                .update_container_resources(req)
                .await
                .map_err(|s| anyhow!("UpdateContainerResources: {}", status_text(&s)))?;
            let after = cri.sh(&c1, cg).await?;
            let want = format!("{MEMORY_LIMIT}\n{CPU_QUOTA} {CPU_PERIOD}\n");
            ensure!(
                before != want && after == want,
                "memory.max, cpu.max before {before:?}, after {after:?}, wanted {want:?}"
            );
            Ok(format!(
                "memory.max, cpu.max: {:?} -> {:?}",
                before.trim(),
                after.trim()
            ))
        }
        .await,
    );
}
