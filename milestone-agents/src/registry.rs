//! [`Registry`]: which runner plays which role, with a direct (in-process) fallback per role.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use milestone_core::engine::Role;

use crate::request::role_name;
use crate::runner::AgentRunner;

/// Why no runner could be found for a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Nothing is bound to the role, neither a runner nor a direct fallback.
    #[error("no runner is bound to role {role}")]
    NotBound {
        /// The role, in words.
        role: String,
    },
    /// A degraded attempt needs the role's direct runner and none is bound.
    #[error("role {role} has no direct runner for a degraded attempt")]
    NoDirect {
        /// The role, in words.
        role: String,
    },
    /// The bound runner is unavailable and the role has no direct fallback.
    #[error("runner `{runner}` for role {role} is unavailable and there is no direct fallback")]
    Unavailable {
        /// The role, in words.
        role: String,
        /// The unavailable runner's name.
        runner: String,
    },
}

/// How [`Registry::resolve_detailed`] chose a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunnerSource {
    /// The role's runner, available.
    Primary,
    /// The role's direct runner, because the primary is unavailable or not bound.
    DirectFallback,
    /// The role's direct runner, because the attempt is degraded.
    Degraded,
}

/// A chosen runner and how it was chosen.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The runner.
    pub runner: Arc<dyn AgentRunner>,
    /// Why this one.
    pub source: RunnerSource,
}

/// A role's bindings: the runner and the direct fallback.
#[derive(Default, Clone)]
struct Slot {
    primary: Option<Arc<dyn AgentRunner>>,
    direct: Option<Arc<dyn AgentRunner>>,
}

/// Binds roles to runners.
///
/// Each role may have a **runner** (an agent) and a **direct runner** (in-process, always
/// there, used for degraded attempts and when the runner is unavailable). Roles are the
/// engine's [`Role`]s. A phase's role `Role::Phase(id)` looks first for a binding of exactly
/// that phase, then for the generic phase binding made with
/// [`bind_any_phase`](Registry::bind_any_phase) / [`bind_direct_any_phase`](Registry::bind_direct_any_phase),
/// slot by slot (a phase bound only to a runner still gets the generic direct fallback).
///
/// ```
/// use milestone_agents::{AgentOutput, FnAgent, Registry, RunnerSource};
/// use milestone_core::engine::Role;
/// use milestone_core::PhaseId;
///
/// let mut registry = Registry::new();
/// registry
///     .bind_any_phase(FnAgent::sync("llm", |_| Ok(AgentOutput::new("agent"))).with_available(false))
///     .bind_direct_any_phase(FnAgent::sync("direct", |_| Ok(AgentOutput::new("direct"))));
/// let role = Role::Phase(PhaseId::new("design")?);
/// let chosen = futures::executor::block_on(registry.resolve_detailed(&role, false))?;
/// assert_eq!(chosen.runner.name(), "direct");
/// assert_eq!(chosen.source, RunnerSource::DirectFallback);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default, Clone)]
pub struct Registry {
    roles: HashMap<Role, Slot>,
    any_phase: Slot,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |s: &Slot| {
            (
                s.primary.as_ref().map(|r| r.name().to_owned()),
                s.direct.as_ref().map(|r| r.name().to_owned()),
            )
        };
        let mut roles: Vec<(String, _)> = self
            .roles
            .iter()
            .map(|(role, slot)| (describe(role), names(slot)))
            .collect();
        roles.sort_by(|a, b| a.0.cmp(&b.0));
        f.debug_struct("Registry")
            .field("roles", &roles)
            .field("any_phase", &names(&self.any_phase))
            .finish()
    }
}

fn describe(role: &Role) -> String {
    match role {
        Role::Phase(p) => format!("phase:{p}"),
        Role::Custom(name) => format!("custom:{name}"),
        other => role_name(other).to_owned(),
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    fn slot(&mut self, role: Role) -> &mut Slot {
        self.roles.entry(role).or_default()
    }

    /// Binds `runner` to `role` (replacing any previous binding).
    pub fn bind(&mut self, role: Role, runner: impl AgentRunner + 'static) -> &mut Registry {
        self.slot(role).primary = Some(Arc::new(runner));
        self
    }

    /// Binds a shared runner to `role`.
    pub fn bind_arc(&mut self, role: Role, runner: Arc<dyn AgentRunner>) -> &mut Registry {
        self.slot(role).primary = Some(runner);
        self
    }

    /// Binds the direct (in-process) runner of `role`.
    pub fn bind_direct(&mut self, role: Role, runner: impl AgentRunner + 'static) -> &mut Registry {
        self.slot(role).direct = Some(Arc::new(runner));
        self
    }

    /// Binds a shared direct runner to `role`.
    pub fn bind_direct_arc(&mut self, role: Role, runner: Arc<dyn AgentRunner>) -> &mut Registry {
        self.slot(role).direct = Some(runner);
        self
    }

    /// Binds `runner` to every phase without a phase-specific runner.
    pub fn bind_any_phase(&mut self, runner: impl AgentRunner + 'static) -> &mut Registry {
        self.any_phase.primary = Some(Arc::new(runner));
        self
    }

    /// Binds the direct runner of every phase without a phase-specific direct runner.
    pub fn bind_direct_any_phase(&mut self, runner: impl AgentRunner + 'static) -> &mut Registry {
        self.any_phase.direct = Some(Arc::new(runner));
        self
    }

    /// The runner bound to `role` (after the phase fallback), if any.
    pub fn runner(&self, role: &Role) -> Option<&Arc<dyn AgentRunner>> {
        self.roles
            .get(role)
            .and_then(|s| s.primary.as_ref())
            .or_else(|| self.phase_default(role).and_then(|s| s.primary.as_ref()))
    }

    /// The direct runner bound to `role` (after the phase fallback), if any.
    pub fn direct(&self, role: &Role) -> Option<&Arc<dyn AgentRunner>> {
        self.roles
            .get(role)
            .and_then(|s| s.direct.as_ref())
            .or_else(|| self.phase_default(role).and_then(|s| s.direct.as_ref()))
    }

    fn phase_default(&self, role: &Role) -> Option<&Slot> {
        matches!(role, Role::Phase(_)).then_some(&self.any_phase)
    }

    /// Picks the runner for an attempt: for a `degraded` attempt the direct runner; otherwise
    /// the bound runner if [`available`](AgentRunner::available), else the direct runner.
    pub async fn resolve(
        &self,
        role: &Role,
        degraded: bool,
    ) -> Result<Arc<dyn AgentRunner>, RegistryError> {
        self.resolve_detailed(role, degraded)
            .await
            .map(|r| r.runner)
    }

    /// Like [`resolve`](Registry::resolve), also saying why the runner was chosen (for run
    /// metrics: how often agents fell back to direct).
    pub async fn resolve_detailed(
        &self,
        role: &Role,
        degraded: bool,
    ) -> Result<Resolved, RegistryError> {
        let direct = self.direct(role);
        if degraded {
            return direct
                .map(|r| Resolved {
                    runner: Arc::clone(r),
                    source: RunnerSource::Degraded,
                })
                .ok_or_else(|| RegistryError::NoDirect {
                    role: describe(role),
                });
        }
        match (self.runner(role), direct) {
            (Some(primary), direct) => {
                if primary.available().await {
                    Ok(Resolved {
                        runner: Arc::clone(primary),
                        source: RunnerSource::Primary,
                    })
                } else if let Some(d) = direct {
                    Ok(Resolved {
                        runner: Arc::clone(d),
                        source: RunnerSource::DirectFallback,
                    })
                } else {
                    Err(RegistryError::Unavailable {
                        role: describe(role),
                        runner: primary.name().to_owned(),
                    })
                }
            }
            (None, Some(d)) => Ok(Resolved {
                runner: Arc::clone(d),
                source: RunnerSource::DirectFallback,
            }),
            (None, None) => Err(RegistryError::NotBound {
                role: describe(role),
            }),
        }
    }

    /// Whether the runners (not the direct ones) of every role in `roles` are bound and
    /// available: the orchestrator's "agents available" input to the choice of mode.
    pub async fn agents_available(&self, roles: &[Role]) -> bool {
        for role in roles {
            match self.runner(role) {
                Some(r) if r.available().await => {}
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fn_agent::FnAgent;
    use crate::output::AgentOutput;
    use milestone_core::PhaseId;

    fn agent(name: &'static str, available: bool) -> impl AgentRunner + 'static {
        FnAgent::sync(name, |_| Ok(AgentOutput::default())).with_available(available)
    }

    fn phase(id: &str) -> Role {
        Role::Phase(PhaseId::new(id).unwrap())
    }

    /// The registry used by every case: design has its own agents, other phases the generic
    /// ones; scope has an unavailable agent and a direct one; risk only an unavailable agent;
    /// estimation only a direct runner.
    fn registry() -> Registry {
        let mut r = Registry::new();
        r.bind(phase("design"), agent("design-llm", true))
            .bind_any_phase(agent("phase-llm", true))
            .bind_direct_any_phase(agent("phase-direct", true))
            .bind(Role::Scope, agent("scope-llm", false))
            .bind_direct(Role::Scope, agent("scope-direct", true))
            .bind(Role::Risk, agent("risk-llm", false))
            .bind_direct(Role::Estimation, agent("estimation-direct", true))
            .bind(Role::Custom("review".into()), agent("reviewer", true));
        r
    }

    fn check(role: Role, degraded: bool, expected: Result<(&str, RunnerSource), RegistryError>) {
        let got = futures::executor::block_on(registry().resolve_detailed(&role, degraded))
            .map(|r| (r.runner.name().to_owned(), r.source));
        let expected = expected.map(|(n, s)| (n.to_owned(), s));
        assert_eq!(got, expected, "{role:?} degraded={degraded}");
    }

    #[test]
    fn resolution_table() {
        use RunnerSource::*;
        check(phase("design"), false, Ok(("design-llm", Primary)));
        check(phase("design"), true, Ok(("phase-direct", Degraded)));
        check(phase("spec"), false, Ok(("phase-llm", Primary)));
        check(phase("spec"), true, Ok(("phase-direct", Degraded)));
        check(Role::Scope, false, Ok(("scope-direct", DirectFallback)));
        check(Role::Scope, true, Ok(("scope-direct", Degraded)));
        check(
            Role::Estimation,
            false,
            Ok(("estimation-direct", DirectFallback)),
        );
        check(
            Role::Risk,
            false,
            Err(RegistryError::Unavailable {
                role: "risk".into(),
                runner: "risk-llm".into(),
            }),
        );
        check(
            Role::Risk,
            true,
            Err(RegistryError::NoDirect {
                role: "risk".into(),
            }),
        );
        check(
            Role::Task,
            false,
            Err(RegistryError::NotBound {
                role: "task".into(),
            }),
        );
        check(
            Role::Custom("review".into()),
            false,
            Ok(("reviewer", Primary)),
        );
        check(
            Role::Custom("other".into()),
            false,
            Err(RegistryError::NotBound {
                role: "custom:other".into(),
            }),
        );
    }

    #[test]
    fn agents_available_needs_every_role_bound_and_available() {
        let r = registry();
        let ok = futures::executor::block_on(r.agents_available(&[phase("design"), phase("spec")]));
        assert!(ok);
        let scope =
            futures::executor::block_on(r.agents_available(&[phase("design"), Role::Scope]));
        assert!(!scope);
        let unbound = futures::executor::block_on(r.agents_available(&[Role::Task]));
        assert!(!unbound);
        assert!(format!("{r:?}").contains("design-llm"));
    }
}
