"""The public surface of ``actors.master`` is exactly its ``__all__``."""

from __future__ import annotations

import actors.master


def test_all_names_are_exported_and_public() -> None:
    for name in actors.master.__all__:
        assert hasattr(actors.master, name), name
        assert not name.startswith("_"), name


def test_public_surface_is_pinned() -> None:
    assert sorted(actors.master.__all__) == sorted(
        [
            "AgentCallError",
            "AgentReply",
            "CancelMasterTurn",
            "GetMasterStatus",
            "LoopSettings",
            "MasterAgent",
            "MasterConfig",
            "MasterMessage",
            "MasterStatus",
            "ModelSettings",
            "ProviderError",
            "ProviderPool",
            "StepLimitError",
            "Tool",
            "ToolCallError",
            "ToolCatalogue",
            "TurnError",
            "TurnRequest",
            "TurnRunner",
            "call_agent",
            "master_agent_spec",
            "model_settings",
        ]
    )
