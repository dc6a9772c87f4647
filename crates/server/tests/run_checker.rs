//! The run checker every stream test leans on (`common::tracker`): a well-formed run passes,
//! and each way of breaking PROTOCOL.md §4's order is caught — also those that keep the
//! counts of starts and ends equal, which a counting check would let through.

mod common;

use common::{assert_mid_run, check_run};
use serde_json::{Value, json};

/// A compact run: `S a` start of agent a (parent supervisor unless a is the supervisor),
/// `T a x c` tool x of agent a with call id c executing, `t a x c` its completion, `E a` end
/// of agent a, `H a` agent a thinking.
fn run(spec: &str) -> Vec<Value> {
    spec.split(',')
        .enumerate()
        .map(|(i, step)| {
            let parts: Vec<&str> = step.split_whitespace().collect();
            let seq = i as u64 + 1;
            let agent = parts[1];
            let base = json!({"seq": seq, "run_id": "r1", "agent": agent});
            let mut e = base.as_object().unwrap().clone();
            let kind = match parts[0] {
                "S" => {
                    if agent != "supervisor" {
                        e.insert("parent_agent".into(), json!("supervisor"));
                    }
                    "agent_started"
                }
                "H" => "agent_thinking",
                "T" | "t" => {
                    e.insert("tool".into(), json!(parts[2]));
                    e.insert("call_id".into(), json!(parts[3]));
                    if parts[0] == "T" {
                        "tool_executing"
                    } else {
                        "tool_completed"
                    }
                }
                "E" => "agent_completed",
                other => panic!("unknown step {other}"),
            };
            e.insert("type".into(), json!(kind));
            Value::Object(e)
        })
        .collect()
}

fn check(spec: &str) -> Result<(), String> {
    let events = run(spec);
    check_run(&events.iter().collect::<Vec<_>>())
}

const GOOD: &str = "S supervisor,H supervisor,S data,T data totals c1,t data totals c1,\
                    T data breakdown c2,t data breakdown c2,E data,S report,E report,E supervisor";

#[test]
fn a_well_formed_run_passes() {
    assert_eq!(check(GOOD), Ok(()));
    // The same agent may run again once it has ended.
    assert_eq!(
        check("S supervisor,S data,E data,S data,T data x c1,t data x c1,E data,E supervisor"),
        Ok(())
    );
}

#[test]
fn each_order_violation_is_caught_with_its_reason() {
    let cases = [
        // Counts balanced, order wrong: what a counting check misses.
        (
            "S supervisor,S data,t data totals c1,T data totals c1,E data,E supervisor",
            "completed before it started",
        ),
        (
            "S supervisor,E data,S data,E supervisor",
            "agent_completed of data outside its agent's start and end",
        ),
        (
            "S supervisor,S data,E data,T data totals c1,t data totals c1,E supervisor",
            "tool_executing of data outside its agent's start and end",
        ),
        (
            "S supervisor,S data,T data totals c1,E data,t data totals c1,E supervisor",
            "data completed with tool call c1 open",
        ),
        (
            "S supervisor,S data,E supervisor,E data",
            "the last event is not the supervisor's end",
        ),
        (
            "S data,S supervisor,E data,E supervisor",
            "the first event is not the supervisor's start",
        ),
        (
            "S supervisor,S data,S report,T data a c1,t report a c1,E report,E data,E supervisor",
            "started as data/a, completed as report/a",
        ),
        (
            "S supervisor,S data,T data a c1,t data a c1,T data a c1,t data a c1,E data,E supervisor",
            "call_id c1 used twice",
        ),
        (
            "S supervisor,S data,S data,E data,E data,E supervisor",
            "data started again while running",
        ),
        (
            "S supervisor,H data,S data,E data,E supervisor",
            "agent_thinking of data outside",
        ),
        (
            "S supervisor,E supervisor,S data,E data,E supervisor",
            "comes after the supervisor ended",
        ),
    ];
    for (spec, why) in cases {
        let got = check(spec);
        assert!(
            got.as_ref().is_err_and(|e| e.contains(why)),
            "{spec}: expected an error containing {why:?}, got {got:?}"
        );
    }
}

#[test]
fn events_out_of_seq_order_or_of_another_run_are_caught() {
    let mut events = run(GOOD);
    events[5]["seq"] = json!(3);
    let seq_repeated = check_run(&events.iter().collect::<Vec<_>>());
    assert!(
        seq_repeated
            .as_ref()
            .is_err_and(|e| e.contains("out of seq order")),
        "{seq_repeated:?}"
    );
    let mut events = run(GOOD);
    events[4]["run_id"] = json!("r2");
    let foreign = check_run(&events.iter().collect::<Vec<_>>());
    assert!(
        foreign.as_ref().is_err_and(|e| e.contains("another run")),
        "{foreign:?}"
    );
}

#[test]
fn a_sub_agent_must_start_inside_its_parent() {
    let mut events = run("S supervisor,S data,E data,E supervisor");
    events[1]["parent_agent"] = json!("planner");
    let got = check_run(&events.iter().collect::<Vec<_>>());
    assert!(
        got.as_ref()
            .is_err_and(|e| e.contains("started outside its parent")),
        "{got:?}"
    );
}

#[test]
fn a_cut_is_mid_run_only_between_the_supervisors_start_and_end() {
    let events = run(GOOD);
    assert_mid_run(&events[..5], "cut");
    for seen in [&events[..0], &events[..]] {
        let caught = std::panic::catch_unwind(|| assert_mid_run(seen, "cut"));
        assert!(caught.is_err(), "{} events seen", seen.len());
    }
}
