//! The `five`, `bad-input`, `hold`, `remove-all` and `pod-start` scenarios.
#![allow(unused_imports)] // one prelude for the parts of the tool
use super::*;

pub(crate) async fn scenario_five(cri: &Cri, r: &mut Report) {
    const N: usize = 5;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let cri = cri.clone();
        set.spawn(async move {
            let name = format!("sp-five-{i}");
            let pcfg = cri.pod_config(&name);
            let started = Instant::now();
            let pod = cri.run_pod(&pcfg).await.map_err(|s| {
                (
                    name.clone(),
                    None,
                    anyhow!("RunPodSandbox: {}", status_text(&s)),
                )
            });
            let pod = match pod {
                Ok(p) => p,
                Err(e) => return Err(e),
            };
            let arg = format!("{}", 200_000 + i);
            let ccfg = cri.container_config("c", &["sleep", &arg], None);
            match cri.create_and_start(&pod, &pcfg, &ccfg).await {
                Ok(c) => Ok((name, pod, c, started.elapsed())),
                Err(e) => Err((name, Some(pod), e)),
            }
        });
    }
    // (name, pod id) of every pod that exists, for the teardown.
    let mut pods: Vec<(String, String)> = Vec::new();
    let mut running = Vec::new();
    let mut errors = Vec::new();
    while let Some(res) = set.join_next().await {
        match res {
            Ok(Ok((name, pod, c, took))) => {
                pods.push((name.clone(), pod.clone()));
                running.push((name, pod, c, took));
            }
            Ok(Err((name, pod, e))) => {
                if let Some(p) = pod {
                    pods.push((name.clone(), p));
                }
                errors.push(format!("{name}: {e:#}"));
            }
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let all = ms(t.elapsed());
    r.check(
        "five-pods-ready",
        async {
            ensure!(errors.is_empty(), "{}", errors.join("; "));
            let mut ips = Vec::new();
            for (name, pod, c, _) in &running {
                let st = cri
                    .pod_status(pod)
                    .await
                    .map_err(|s| anyhow!("{name}: {}", status_text(&s)))?;
                ensure!(
                    st.state == cri::PodSandboxState::SandboxReady as i32,
                    "{name} is {}",
                    pod_state_name(st.state)
                );
                let cs = cri
                    .container_status(c)
                    .await
                    .map_err(|s| anyhow!("{name}: {}", status_text(&s)))?;
                ensure!(
                    cs.state == cri::ContainerState::ContainerRunning as i32,
                    "{name}'s container is {}",
                    state_name(cs.state)
                );
                ips.push(st.network.map(|n| n.ip).unwrap_or_default());
            }
            let mut distinct = ips.clone();
            distinct.sort();
            distinct.dedup();
            ensure!(
                running.len() == N && distinct.len() == N && !distinct.iter().any(String::is_empty),
                "{} pods running, ips {ips:?}",
                running.len()
            );
            let mut times: Vec<u128> = running.iter().map(|x| ms(x.3)).collect();
            times.sort_unstable();
            Ok(format!(
                "{N} pods ready in {all} ms (each {times:?} ms), ips {ips:?}"
            ))
        }
        .await,
    );
    let ids: Vec<&str> = pods.iter().map(|(_, p)| p.as_str()).collect();
    let cids: Vec<&str> = running.iter().map(|x| x.2.as_str()).collect();
    if !ids.is_empty() {
        r.check("five-one-shim-per-pod", one_shim_per_pod(&ids, &cids));
    }

    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (name, pod) in pods.clone() {
        let cri = cri.clone();
        set.spawn(async move {
            cri.teardown(&pod, &name)
                .await
                .map_err(|e| format!("{name}: {e:#}"))
        });
    }
    let mut errors = Vec::new();
    while let Some(res) = set.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let took = ms(t.elapsed());
    r.check(
        "five-pods-stopped-and-removed",
        async {
            ensure!(errors.is_empty(), "{}", errors.join("; "));
            nothing_listed(cri).await?;
            Ok(format!(
                "{} pods stopped and removed in {took} ms",
                pods.len()
            ))
        }
        .await,
    );
}

pub(crate) async fn scenario_bad_input(cri: &Cri, r: &mut Report) {
    const NO_SUCH: &str = "sandpod-no-such-id-0123456789";
    r.check(
        "bad-container-status-unknown-id",
        expect_error(
            cri.container_status(NO_SUCH).await,
            Some(Code::NotFound),
            NO_SUCH,
        ),
    );
    r.check(
        "bad-exec-sync-unknown-id",
        expect_error(
            cri.exec_sync(NO_SUCH, &["true"]).await,
            Some(Code::NotFound),
            NO_SUCH,
        ),
    );
    r.check(
        "bad-stop-pod-unknown-id",
        expect_error(cri.stop_pod(NO_SUCH).await, Some(Code::NotFound), NO_SUCH),
    );
    let pcfg = cri.pod_config("sp-bad");
    let ccfg = cri.container_config("c", &["sleep", "300000"], None);
    r.check(
        "bad-create-in-missing-sandbox",
        expect_error(
            cri.create_container(NO_SUCH, &pcfg, &ccfg).await,
            Some(Code::NotFound),
            NO_SUCH,
        ),
    );
    r.check(
        "bad-run-pod-unknown-handler",
        async {
            let ctx = expect_error(
                cri.run_pod_with(&cri.pod_config("sp-bad-handler"), "no-such-handler")
                    .await,
                None,
                "no-such-handler",
            )?;
            nothing_listed(cri)
                .await
                .context("after the failed RunPodSandbox")?;
            let _ = remove_pod_cgroup("sp-bad-handler").await;
            Ok(ctx)
        }
        .await,
    );
    r.check(
        "bad-run-pod-without-metadata",
        async {
            let mut cfg = cri.pod_config("sp-bad-meta");
            cfg.metadata = None;
            let ctx = expect_error(cri.run_pod(&cfg).await, None, "metadata")?;
            nothing_listed(cri)
                .await
                .context("after the failed RunPodSandbox")?;
            Ok(ctx)
        }
        .await,
    );

    // In a real pod: malformed containers and a missing binary.
    let Some(pod) = r.need(
        "bad-pod-runs",
        cri.run_pod(&pcfg)
            .await
            .map(|id| {
                let ctx = format!("pod {}", short(&id));
                (id, ctx)
            })
            .map_err(|s| anyhow!("RunPodSandbox: {}", status_text(&s))),
    ) else {
        return;
    };
    let mut empty = ccfg.clone();
    empty.image = Some(cri::ImageSpec::default());
    r.check(
        "bad-create-empty-image",
        async {
            let ctx = expect_error(cri.create_container(&pod, &pcfg, &empty).await, None, "")?;
            let left = cri
                .list_containers(Some(&pod))
                .await
                .map_err(|s| anyhow!("{}", status_text(&s)))?;
            ensure!(left.is_empty(), "containers left: {left:?}");
            Ok(ctx)
        }
        .await,
    );
    let mut no_meta = ccfg.clone();
    no_meta.metadata = None;
    r.check(
        "bad-create-without-metadata",
        async {
            let ctx = expect_error(
                cri.create_container(&pod, &pcfg, &no_meta).await,
                None,
                "metadata",
            )?;
            let left = cri
                .list_containers(Some(&pod))
                .await
                .map_err(|s| anyhow!("{}", status_text(&s)))?;
            ensure!(left.is_empty(), "containers left: {left:?}");
            Ok(ctx)
        }
        .await,
    );
    r.check(
        "bad-exec-missing-binary",
        async {
            let c = cri.create_and_start(&pod, &pcfg, &ccfg).await?;
            let missing = "/no/such/binary";
            let ctx = match cri.exec_sync(&c, &[missing]).await {
                Err(s) => {
                    ensure!(
                        s.message().contains(missing),
                        "the error does not name {missing}: {}",
                        status_text(&s)
                    );
                    format!("error {}", status_text(&s))
                }
                Ok(x) => {
                    let err = String::from_utf8_lossy(&x.stderr);
                    ensure!(
                        x.exit_code != 0 && err.contains(missing),
                        "exit {}, stderr {err:?}",
                        x.exit_code
                    );
                    format!("exit {}, stderr {err:?}", x.exit_code)
                }
            };
            // The container is unharmed.
            let out = cri.sh(&c, "echo still-here").await?;
            ensure!(out == "still-here\n", "after the failed exec: {out:?}");
            Ok(ctx)
        }
        .await,
    );
    r.check(
        "bad-pod-removed",
        async {
            cri.teardown(&pod, "sp-bad").await?;
            nothing_listed(cri).await
        }
        .await,
    );
}

pub(crate) async fn scenario_hold(cri: &Cri, r: &mut Report) {
    let name = "sp-hold";
    let pcfg = cri.pod_config(name);
    let ccfg = cri.container_config("c", &["sleep", "500000"], None);
    r.check(
        "hold-pod-running",
        async {
            let pod = cri
                .run_pod(&pcfg)
                .await
                .map_err(|s| anyhow!("RunPodSandbox: {}", status_text(&s)))?;
            let c = cri.create_and_start(&pod, &pcfg, &ccfg).await?;
            Ok(format!(
                "pod {} with container {} left running",
                short(&pod),
                short(&c)
            ))
        }
        .await,
    );
}

pub(crate) async fn scenario_remove_all(cri: &Cri, r: &mut Report) {
    r.check(
        "remove-all-pods",
        async {
            let pods = cri
                .list_pods()
                .await
                .map_err(|s| anyhow!("ListPodSandbox: {}", status_text(&s)))?;
            for p in &pods {
                let name = p
                    .metadata
                    .as_ref()
                    .map(|m| m.name.as_str())
                    .unwrap_or_default();
                cri.teardown(&p.id, name).await?;
            }
            nothing_listed(cri).await?;
            Ok(format!("{} pod(s) stopped and removed", pods.len()))
        }
        .await,
    );
}

/// `rounds` times, through the handler under test and (when that is not runc) runc's as the
/// control, alternating: RunPodSandbox + CreateContainer + StartContainer timed, the pod removed
/// after each. Prints `pod_start <handler> <ms>|fail` per round (make bench pairs them) and a
/// `bench pod_start_ms` line per handler.
pub(crate) async fn scenario_pod_start(cri: &Cri, r: &mut Report, rounds: usize) {
    let mut handlers = vec![cri.handler.as_str()];
    if cri.handler != "runc" {
        handlers.push("runc");
    }
    let mut times: HashMap<&str, Vec<u128>> = HashMap::new();
    let mut errors = Vec::new();
    for i in 0..rounds {
        for &h in &handlers {
            let name = format!("sp-bench-{h}-{i}");
            let pcfg = cri.pod_config(&name);
            let ccfg = cri.container_config("c", &["sleep", "400000"], None);
            let t = Instant::now();
            let pod = match cri.run_pod_with(&pcfg, h).await {
                Ok(p) => p,
                Err(s) => {
                    println!("pod_start {h} fail");
                    errors.push(format!("{h} round {i}: RunPodSandbox: {}", status_text(&s)));
                    continue;
                }
            };
            match cri.create_and_start(&pod, &pcfg, &ccfg).await {
                Ok(_) => {
                    let took = ms(t.elapsed());
                    println!("pod_start {h} {took}");
                    times.entry(h).or_default().push(took);
                }
                Err(e) => {
                    println!("pod_start {h} fail");
                    errors.push(format!("{h} round {i}: {e:#}"));
                }
            }
            if let Err(e) = cri.teardown(&pod, &name).await {
                errors.push(format!("{h} round {i}: teardown: {e:#}"));
            }
        }
    }
    for &h in &handlers {
        let t = times.get(h).cloned().unwrap_or_default();
        let mut sorted = t.clone();
        sorted.sort_unstable();
        if let Some(median) = sorted.get(sorted.len() / 2) {
            println!("bench pod_start_ms handler={h} median={median} rounds={t:?}");
        }
    }
    r.check(
        "pod-start-bench",
        async {
            ensure!(errors.is_empty(), "{}", errors.join("; "));
            for &h in &handlers {
                let n = times.get(h).map_or(0, Vec::len);
                ensure!(n == rounds && rounds > 0, "{n} {h} rounds timed");
            }
            nothing_listed(cri).await?;
            Ok(format!(
                "{rounds} rounds each through {}",
                handlers.join(", ")
            ))
        }
        .await,
    );
}
