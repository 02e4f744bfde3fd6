//! The built-in aggregation: the deterministic [`plan::aggregate`] as a runner, used when no
//! runner (and no direct runner) is bound to the aggregation role.

use async_trait::async_trait;
use milestone_core::KiroStrategy;
use milestone_core::engine::{AnalysisKind, Work};
use milestone_core::plan::{self, Analyses, EstimationAnalysis, RiskAnalysis, ScopeAnalysis};
use serde::de::DeserializeOwned;

use crate::context::AgentContext;
use crate::output::{AgentError, AgentOutput};
use crate::request::AgentRequest;
use crate::runner::AgentRunner;

/// Merges the four analyses handed on as its input into one `MilestonePlan` with
/// [`plan::aggregate`].
///
/// Each input's `data` is either the analysis itself (a `ScopeAnalysis` for scope, an
/// `EstimationAnalysis` for estimation, a `RiskAnalysis` for risk, a `KiroStrategy` for the
/// KIRO strategy) or the tagged form `{"analysis": "scope", "result": {…}}`; `null` means
/// the analysis gave nothing (its plan section stays empty, and transition will say so).
/// Anything else is an invalid output naming the analysis and the JSON error.
///
/// ```
/// use milestone_agents::orchestrator::BuiltinAggregator;
/// use milestone_agents::{AgentContext, AgentRequest, AgentRunner};
/// use milestone_core::engine::{AnalysisKind, Role, Upstream, Work};
/// use milestone_core::{MilestoneId, MilestonePlan};
///
/// let mut request = AgentRequest::new(MilestoneId::new("m")?, Role::Aggregation,
///     Work::Planning(AnalysisKind::Aggregation));
/// request.input = vec![Upstream { from: Work::Planning(AnalysisKind::Scope),
///     data: serde_json::json!({"components": ["b", "a", "a"], "file_count": 3}) }];
/// let (ctx, _handle) = AgentContext::new();
/// let out = futures::executor::block_on(BuiltinAggregator.run(request, ctx))?;
/// let plan: MilestonePlan = serde_json::from_value(out.data)?;
/// assert_eq!(plan.scope.map(|s| s.components), Some(vec!["a".to_string(), "b".to_string()]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinAggregator;

fn section<T: DeserializeOwned>(
    from: &Work,
    data: &serde_json::Value,
) -> Result<Option<T>, AgentError> {
    if data.is_null() {
        return Ok(None);
    }
    serde_json::from_value(data.clone())
        .map(Some)
        .map_err(|e| AgentError::invalid_output(format!("{from}: {e}")))
}

fn record(
    analyses: &mut Analyses,
    from: &Work,
    data: &serde_json::Value,
) -> Result<(), AgentError> {
    if data.get("analysis").is_some()
        && let Ok(tagged) = serde_json::from_value::<plan::Analysis>(data.clone())
    {
        analyses.record(tagged);
        return Ok(());
    }
    match from {
        Work::Planning(AnalysisKind::Scope) => {
            analyses.scope = section::<ScopeAnalysis>(from, data)?;
        }
        Work::Planning(AnalysisKind::Estimation) => {
            analyses.estimation = section::<EstimationAnalysis>(from, data)?;
        }
        Work::Planning(AnalysisKind::Risk) => {
            analyses.risk = section::<RiskAnalysis>(from, data)?;
        }
        Work::Planning(AnalysisKind::KiroStrategy) => {
            analyses.kiro = section::<KiroStrategy>(from, data)?;
        }
        other => {
            return Err(AgentError::invalid_output(format!(
                "{other} is not a planning analysis"
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl AgentRunner for BuiltinAggregator {
    fn name(&self) -> &str {
        "builtin-aggregation"
    }

    async fn run(
        &self,
        request: AgentRequest,
        _ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        let mut analyses = Analyses::default();
        for upstream in &request.input {
            record(&mut analyses, &upstream.from, &upstream.data)?;
        }
        let plan = plan::aggregate(analyses);
        let data = serde_json::to_value(&plan)
            .map_err(|e| AgentError::permanent(format!("the plan does not serialize: {e}")))?;
        Ok(AgentOutput::new("aggregated the four analyses").with_data(data))
    }
}
