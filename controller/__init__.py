"""The metacognitive controller: monitors, the structure router and the policies."""
