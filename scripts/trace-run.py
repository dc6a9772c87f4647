#!/usr/bin/env python3
# Asks one question over the WebSocket as user `bench` and prints each event (but thoughts) with
# its receipt time in ms from the send, tool durations included, then the total to the
# supervisor's agent_completed. Needs the `websockets` package.
#   python3 scripts/trace-run.py 127.0.0.1:8080 "Analyze my AI costs"
import asyncio, json, sys, time, websockets
async def main(addr, q):
    async with websockets.connect(f"ws://{addr}/ws?user=bench", max_size=None) as ws:
        while True:
            v = json.loads(await ws.recv())
            if v.get("type") == "connection_ready": break
        t0 = time.perf_counter()
        await ws.send(json.dumps({"type":"user_message","client_msg_id":"m%d"%time.time_ns(),"content":q,"thread_id":None}))
        while True:
            v = json.loads(await ws.recv())
            t = (time.perf_counter()-t0)*1000
            ty = v.get("type")
            extra = v.get("tool") or ""
            if ty == "tool_completed": extra += " dur=%s" % v.get("duration_ms")
            if ty not in ("agent_thinking",):
                print(f"{t:8.1f} {ty:16} {v.get('agent','')} {extra}")
            if ty == "agent_completed" and v.get("agent") == "supervisor":
                print(f"TOTAL {t:.1f} ms"); break
asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv)>2 else "Analyze my AI costs"))
