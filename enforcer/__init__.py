"""enforcer: streaming enforcement against distillation abuse of LLM APIs."""

__version__ = "0.1.0"
