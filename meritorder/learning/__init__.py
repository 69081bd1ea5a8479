"""A router that learns from outcomes: a contextual Thompson-sampling bandit and its stores."""
