"""The one pipeline (`pipeline`: parse, resolve, override, call LM Studio, answer) and the one relay
(`relay`), the hand-off of finished requests (`observers`) with the metrics (`metrics`), request bodies
(`bodies`), `ollama pull` (`pull`), and the application's state built once at start-up (`state`). May
import every layer below it; not `routing.api`."""
