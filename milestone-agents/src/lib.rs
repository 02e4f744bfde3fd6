//! # milestone-agents
//!
//! placeholder
#![doc = ""]

pub mod clock;
pub mod context;
pub mod fn_agent;
pub mod output;
pub mod registry;
pub mod request;
pub mod runner;

pub use clock::{Clock, Elapsed, ManualClock, SystemClock, with_timeout};
pub use context::{AgentContext, CancelToken, Cancelled, ContextHandle, Report};
pub use fn_agent::FnAgent;
pub use output::{AgentError, AgentOutput};
pub use registry::{Registry, RegistryError, Resolved, Source};
pub use request::{AgentRequest, PROTOCOL_VERSION, role_name};
pub use runner::{AgentRunner, run_with_deadline};
pub mod scripted;
pub use scripted::{Reply, Responder, ScriptHandle, ScriptedAgent};
#[cfg(unix)]
pub mod command;
#[cfg(unix)]
pub use command::CommandAgent;
