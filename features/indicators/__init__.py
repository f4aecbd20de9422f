"""The programme's monthly district indicators, point in time, with their settings
(indicators.yaml) and the population figures they are rated on (data/)."""
