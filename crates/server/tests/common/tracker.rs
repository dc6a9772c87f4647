//! Following one user's stream across connections and nodes: every event recorded by `seq`,
//! a duplicate fails the test, and checks of what a complete stream looks like — each run's
//! events in a legal order (PROTOCOL.md §4), and a cut that really happened mid-run.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::Client;

/// Every seq from 1 to the highest seen exactly once.
pub fn assert_contiguous(user: &str, seen: &BTreeMap<u64, Value>) {
    let seqs: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{user}: gap in the stream"
    );
}

/// A client that records every stream event by seq and fails on a duplicate.
pub struct Tracker {
    pub user: String,
    pub seen: BTreeMap<u64, Value>,
}

impl Tracker {
    pub fn new(user: &str) -> Tracker {
        Tracker {
            user: user.to_string(),
            seen: BTreeMap::new(),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.seen.keys().last().copied().unwrap_or(0)
    }

    pub fn record(&mut self, v: Value) -> bool {
        let Some(seq) = v["seq"].as_u64() else {
            return false;
        };
        let done = v["type"] == "agent_completed" && v["agent"] == "supervisor";
        assert!(
            self.seen.insert(seq, v).is_none(),
            "{}: seq {seq} delivered twice",
            self.user
        );
        done
    }

    /// Reads `c` until `runs` runs have completed in this user's stream (bounded).
    pub async fn take_until(&mut self, c: &mut Client, runs: usize) {
        for _ in 0..20_000 {
            if self.completed_runs() >= runs {
                return;
            }
            let v = c.next().await.expect("stream ended before the runs did");
            self.record(v);
        }
    }

    pub fn completed_runs(&self) -> usize {
        self.seen
            .values()
            .filter(|v| v["type"] == "agent_completed" && v["agent"] == "supervisor")
            .count()
    }

    pub async fn resume(&self, addr: &str) -> Client {
        let mut c = Client::connect(
            addr,
            &format!("?user={}&last_seq={}", self.user, self.last_seq()),
            &[],
        )
        .await
        .unwrap();
        let ready = c.ready().await;
        assert_eq!(ready["resync_required"], false, "{ready}");
        assert_eq!(ready["user_id"], self.user.as_str());
        c
    }
}

/// A user's events grouped by run (the run's own events, in order).
pub fn split_runs(events: &[Value]) -> Vec<Vec<Value>> {
    let mut by_run: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in events {
        if let Some(r) = e["run_id"].as_str()
            && e["type"] != "message_created"
        {
            by_run.entry(r.to_string()).or_default().push(e.clone());
        }
    }
    by_run.into_values().collect()
}

/// Whether `e` is one of the five agent events (`agent_*`, `tool_*`).
fn is_agent_event(e: &Value) -> bool {
    e["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("agent_") || t.starts_with("tool_"))
}

/// Checks PROTOCOL.md §4 over one run's events (other event types are ignored), in order:
/// see [`check_run`].
pub fn assert_run_well_formed(events: &[Value]) {
    let run: Vec<&Value> = events.iter().filter(|e| is_agent_event(e)).collect();
    if let Err(why) = check_run(&run) {
        let order: Vec<String> = run
            .iter()
            .map(|e| {
                format!(
                    "{} {}{}",
                    e["type"].as_str().unwrap_or("?"),
                    e["agent"].as_str().unwrap_or("?"),
                    e["call_id"]
                        .as_str()
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        panic!("malformed run: {why}\nits agent events in order: {order:#?}");
    }
}

/// The order rules of one run's agent events: all of one run, in increasing `seq`; the
/// supervisor's `agent_started` first and its `agent_completed` last; every agent started
/// (inside its open parent) before it thinks, calls tools or completes, and completed once,
/// with none of its tools or child agents still open; every tool call started inside its open
/// agent before it completes, with a `call_id` used once and the same agent and tool at both
/// ends; nothing open at the end.
pub fn check_run(events: &[&Value]) -> Result<(), String> {
    let str_of = |e: &Value, k: &str| e[k].as_str().map(str::to_string);
    let first = events.first().ok_or("a run has events")?;
    let run_id = str_of(first, "run_id").ok_or("an agent event without run_id")?;
    if first["type"] != "agent_started" || first["agent"] != "supervisor" {
        return Err(format!(
            "the first event is not the supervisor's start: {first}"
        ));
    }
    let last = events.last().ok_or("a run has events")?;
    if last["type"] != "agent_completed" || last["agent"] != "supervisor" {
        return Err(format!(
            "the last event is not the supervisor's end: {last}"
        ));
    }
    // Open agents with their parents; open tool calls with their agent and tool.
    let mut agents: HashMap<String, Option<String>> = HashMap::new();
    let mut tools: HashMap<String, (String, String)> = HashMap::new();
    let mut call_ids: HashSet<String> = HashSet::new();
    let mut last_seq = None;
    let mut supervisor_done = false;
    for (i, e) in events.iter().enumerate() {
        if str_of(e, "run_id").as_deref() != Some(run_id.as_str()) {
            return Err(format!("event {i} belongs to another run: {e}"));
        }
        if let Some(seq) = e["seq"].as_u64() {
            if last_seq.is_some_and(|l| seq <= l) {
                return Err(format!("event {i} is out of seq order: {e}"));
            }
            last_seq = Some(seq);
        }
        if supervisor_done {
            return Err(format!("event {i} comes after the supervisor ended: {e}"));
        }
        let agent = str_of(e, "agent").ok_or_else(|| format!("event {i} names no agent: {e}"))?;
        let kind = e["type"].as_str().unwrap_or_default();
        if kind != "agent_started" && !agents.contains_key(&agent) {
            return Err(format!(
                "{kind} of {agent} outside its agent's start and end: {e}"
            ));
        }
        match kind {
            "agent_started" => {
                if agents.contains_key(&agent) {
                    return Err(format!("{agent} started again while running: {e}"));
                }
                let parent = str_of(e, "parent_agent");
                if i == 0 {
                    if parent.is_some() {
                        return Err(format!("the supervisor has a parent: {e}"));
                    }
                } else if agent == "supervisor" {
                    return Err(format!("the supervisor started twice: {e}"));
                } else {
                    match &parent {
                        Some(p) if agents.contains_key(p) => {}
                        _ => {
                            return Err(format!(
                                "{agent} started outside its parent agent's run: {e}"
                            ));
                        }
                    }
                }
                agents.insert(agent, parent);
            }
            "agent_thinking" => {}
            "tool_executing" => {
                let call = str_of(e, "call_id").ok_or_else(|| format!("no call_id: {e}"))?;
                if !call_ids.insert(call.clone()) {
                    return Err(format!("call_id {call} used twice: {e}"));
                }
                let tool = str_of(e, "tool").unwrap_or_default();
                tools.insert(call, (agent, tool));
            }
            "tool_completed" => {
                let call = str_of(e, "call_id").ok_or_else(|| format!("no call_id: {e}"))?;
                let tool = str_of(e, "tool").unwrap_or_default();
                match tools.remove(&call) {
                    Some(opened) if opened == (agent.clone(), tool.clone()) => {}
                    Some((a, t)) => {
                        return Err(format!(
                            "tool call {call} started as {a}/{t}, completed as {agent}/{tool}"
                        ));
                    }
                    None => {
                        return Err(format!("tool call {call} completed before it started: {e}"));
                    }
                }
            }
            "agent_completed" => {
                if let Some((call, _)) = tools.iter().find(|(_, (a, _))| *a == agent) {
                    return Err(format!("{agent} completed with tool call {call} open: {e}"));
                }
                if let Some((child, _)) = agents
                    .iter()
                    .find(|(_, p)| p.as_deref() == Some(agent.as_str()))
                {
                    return Err(format!("{agent} completed with {child} still running: {e}"));
                }
                agents.remove(&agent);
                supervisor_done = agent == "supervisor";
            }
            other => return Err(format!("unknown agent event {other}: {e}")),
        }
    }
    if !agents.is_empty() || !tools.is_empty() {
        return Err(format!("left open: agents {agents:?}, tools {tools:?}"));
    }
    Ok(())
}

/// Asserts that a cut (a dropped socket, a crash, a close) with `seen` delivered so far came
/// mid-run: some run had started and had not ended. A cut after the run ended tests no resume.
pub fn assert_mid_run<'a>(seen: impl IntoIterator<Item = &'a Value>, cut: &str) {
    let mut started = Vec::new();
    let mut ended = HashSet::new();
    for e in seen {
        if e["agent"] == "supervisor" {
            let run = e["run_id"].as_str().unwrap_or_default().to_string();
            if e["type"] == "agent_started" {
                started.push(run);
            } else if e["type"] == "agent_completed" {
                ended.insert(run);
            }
        }
    }
    assert!(
        started.iter().any(|r| !ended.contains(r)),
        "the {cut} did not happen mid-run: runs started {started:?}, ended {ended:?}"
    );
}

impl Tracker {
    /// Whether a run is in progress in what this tracker has seen (cut now, it is cut
    /// mid-run).
    pub fn in_run(&self) -> bool {
        let supervisor = |kind: &str| {
            self.seen
                .values()
                .filter(|v| v["type"] == kind && v["agent"] == "supervisor")
                .count()
        };
        supervisor("agent_started") > supervisor("agent_completed")
    }

    /// [`assert_mid_run`] over what this tracker has recorded.
    pub fn assert_mid_run(&self, cut: &str) {
        assert_mid_run(self.seen.values(), cut);
    }
}
