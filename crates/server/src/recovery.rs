//! Closing runs that cannot finish by themselves (their task panicked, or the process died
//! mid-run): every `agent_started` and `tool_executing` still open gets its end, with
//! `status: "error"`, as new events of the user's stream, so each start keeps its end.

use std::sync::Arc;

use apogee_protocol::{AgentStatus, EventBody, SUPERVISOR_AGENT, StreamEvent, ToolStatus};
use apogee_store::{RunRecord, RunRow, Store, StoreError};

use crate::hub::{Hub, UserStream};

/// The ends a run's stored events are missing, in the order they must be emitted.
fn missing_ends(run_id: &str, events: &[StreamEvent], reason: &str) -> Vec<EventBody> {
    let mut open_agents: Vec<String> = Vec::new();
    let mut open_tools: Vec<(String, String, String)> = Vec::new();
    let mut supervisor_seen = false;
    for e in events {
        match &e.body {
            EventBody::AgentStarted { agent, .. } => {
                supervisor_seen |= agent == SUPERVISOR_AGENT;
                open_agents.push(agent.clone());
            }
            EventBody::AgentCompleted { agent, .. } => {
                if let Some(i) = open_agents.iter().rposition(|a| a == agent) {
                    open_agents.remove(i);
                }
            }
            EventBody::ToolExecuting {
                agent,
                tool,
                call_id,
                ..
            } => open_tools.push((agent.clone(), tool.clone(), call_id.clone())),
            EventBody::ToolCompleted { call_id, .. } => open_tools.retain(|(_, _, c)| c != call_id),
            _ => {}
        }
    }
    let mut ends = Vec::new();
    if !supervisor_seen {
        ends.push(EventBody::AgentStarted {
            run_id: run_id.to_string(),
            agent: SUPERVISOR_AGENT.into(),
            parent_agent: None,
        });
        open_agents.insert(0, SUPERVISOR_AGENT.into());
    }
    for (agent, tool, call_id) in open_tools {
        ends.push(EventBody::ToolCompleted {
            run_id: run_id.to_string(),
            agent,
            tool,
            call_id,
            status: ToolStatus::Error,
            summary: reason.to_string(),
            duration_ms: 0,
            data: None,
        });
    }
    for agent in open_agents.into_iter().rev() {
        ends.push(EventBody::AgentCompleted {
            run_id: run_id.to_string(),
            agent,
            status: AgentStatus::Error,
            summary: reason.to_string(),
            data: None,
        });
    }
    ends
}

/// Emits whatever ends `run_id` is missing. `end`, when given, is stored in the transaction
/// of the last of them (or alone when none is missing), so a client that sees the run close
/// never reads it as still running.
pub async fn close_run(
    stream: &Arc<UserStream>,
    store: &Store,
    run_id: &str,
    thread_id: &str,
    reason: &str,
    end: Option<RunRecord>,
) -> Result<(), StoreError> {
    let stored = store.run_events(stream.key(), run_id).await?;
    let events: Vec<StreamEvent> = stored
        .iter()
        .filter_map(|e| serde_json::from_str(&e.payload).ok())
        .collect();
    let mut ends = missing_ends(run_id, &events, reason);
    let last = ends.pop();
    for body in ends {
        stream.publish(thread_id, Some(run_id), body).await?;
    }
    match (last, end) {
        (Some(body), Some(end)) => {
            stream
                .queue_with_record(thread_id, run_id, body, end)
                .await?
                .stored()
                .await?;
        }
        (Some(body), None) => {
            stream.publish(thread_id, Some(run_id), body).await?;
        }
        (None, Some(end)) => store.record_run(stream.key(), end).await?,
        (None, None) => {}
    }
    Ok(())
}

/// Closes a run no live node is running any more (its node died or stopped before it ended;
/// see [`crate::lease`]) and marks it interrupted.
pub async fn close_claimed_run(store: &Store, hub: &Hub, run: &RunRow) -> Result<(), StoreError> {
    let ended_at = apogee_protocol::time::record_time(chrono::Utc::now());
    let stream = hub.stream(&Arc::new(run.user.clone()));
    let end = RunRecord::End {
        run_id: run.id.clone(),
        status: "interrupted".into(),
        ended_at,
        plan: None,
    };
    close_run(
        &stream,
        store,
        &run.id,
        &run.thread_id,
        "interrupted: the server stopped before this run finished",
        Some(end),
    )
    .await?;
    tracing::warn!(run_id = %run.id, "closed a run interrupted by a server stop");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(body: EventBody) -> StreamEvent {
        StreamEvent {
            seq: 1,
            ts: String::new(),
            thread_id: "t".into(),
            body,
        }
    }

    #[test]
    fn closes_open_tools_then_agents_innermost_first() {
        let r = "r".to_string();
        let events = vec![
            ev(EventBody::AgentStarted {
                run_id: r.clone(),
                agent: SUPERVISOR_AGENT.into(),
                parent_agent: None,
            }),
            ev(EventBody::AgentStarted {
                run_id: r.clone(),
                agent: "triage".into(),
                parent_agent: Some(SUPERVISOR_AGENT.into()),
            }),
            ev(EventBody::AgentCompleted {
                run_id: r.clone(),
                agent: "triage".into(),
                status: AgentStatus::Ok,
                summary: String::new(),
                data: None,
            }),
            ev(EventBody::AgentStarted {
                run_id: r.clone(),
                agent: "data".into(),
                parent_agent: Some(SUPERVISOR_AGENT.into()),
            }),
            ev(EventBody::ToolExecuting {
                run_id: r.clone(),
                agent: "data".into(),
                tool: "t".into(),
                call_id: "c1".into(),
                args: serde_json::json!({}),
            }),
        ];
        let ends = missing_ends("r", &events, "x");
        let names: Vec<String> = ends
            .iter()
            .map(|b| match b {
                EventBody::ToolCompleted { call_id, .. } => format!("tool:{call_id}"),
                EventBody::AgentCompleted { agent, .. } => format!("agent:{agent}"),
                other => other.type_name().to_string(),
            })
            .collect();
        assert_eq!(names, ["tool:c1", "agent:data", "agent:supervisor"]);
    }

    #[test]
    fn run_without_events_gets_a_supervisor_pair() {
        let ends = missing_ends("r", &[], "x");
        assert_eq!(ends.len(), 2);
        assert_eq!(ends[0].type_name(), "agent_started");
        assert_eq!(ends[1].type_name(), "agent_completed");
    }
}
