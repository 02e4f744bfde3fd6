"""One agent for every role, speaking the milestone CommandAgent protocol (version 1).

Usage: python3 agent.py
stdin: the request as one line of JSON (the "role" key says what is asked).
stdout: JSON lines: progress reports, a hand-off for phases, then {"output": {...}}.
"""
import json
import os
import sys

PLANS = {
    "scope": {"components": ["token service", "session store", "login api", "audit log"],
              "file_count": 12},
    "estimation": {
        "estimates": {
            "phases": [{"phase": p, "effort_ms": ms} for p, ms in
                       [("design", 7_200_000), ("spec", 7_200_000),
                        ("task", 3_600_000), ("execute", 28_800_000)]],
            "buffer_percent": 25,
            "critical_path": ["design", "spec", "task", "execute"],
        },
        "tasks": [
            {"id": "token-service", "title": "token service"},
            {"id": "session-store", "title": "session store"},
            {"id": "login-api", "title": "login api",
             "dependencies": ["token-service", "session-store"]},
            {"id": "audit-log", "title": "audit log", "dependencies": ["token-service"]},
        ],
    },
    "risk": {"risks": [{"description": "sessions invalidated by the new token format",
                        "probability": "medium", "impact": "high",
                        "mitigation": "accept both formats for a while",
                        "contingency": "roll back the token service"}]},
    "kiro-strategy": {
        "keep": [{"description": "the public login API", "phase": "spec"}],
        "improve": [{"description": "token validation in one place", "phase": "design"}],
        "remove": [{"description": "duplicated session checks", "phase": "execute"}],
        "originate": [{"description": "audit logging", "phase": "task"}],
    },
}

OUTPUTS = {
    "design": ["design-decisions", "architecture-diagrams", "pattern-analysis"],
    "spec": ["technical-specs", "api-contracts", "data-models"],
    "task": ["task-list", "dependency-graph", "execution-roadmap"],
    "execute": ["implemented-code", "test-results", "validation-reports"],
}


def say(value):
    print(json.dumps(value), flush=True)


def main():
    request = json.loads(sys.stdin.readline())
    # Set by a binding's "env" in the spec: which binding ran this.
    by = os.environ.get("AGENT_LABEL", "python")
    role = request["role"]
    if role in PLANS:
        say({"progress": 0.5})
        say({"output": {"summary": role + " analysed by " + by, "data": PLANS[role]}})
    elif role == "phase":
        phase = request["role_name"]
        say({"progress": 0.5})
        say({"handoff": {"phase": phase, "draft": True}})
        artifacts = [{"name": n, "kind": "document", "body": {"inline": n}}
                     for n in OUTPUTS.get(phase, [])]
        say({"output": {"summary": phase + " phase done by " + by,
                        "artifacts": artifacts,
                        "decisions": ["upstream inputs: %d" % len(request["input"])]}})
    elif role == "task":
        say({"output": {"summary": "task %s done by %s" % (request["task"], by),
                        "quality": {"tests-passed": 1.0}}})
    else:
        say({"error": {"kind": "permanent", "message": "agent.py cannot act as " + role}})
        sys.exit(1)


if __name__ == "__main__":
    main()
