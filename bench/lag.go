package main

import "errors"

// LagResult is filled by the lag scenario.
type LagResult struct {
	EngineP50ms float64 `json:"engine_p50_ms"`
	EngineP99ms float64 `json:"engine_p99_ms"`
	NaiveP50ms  float64 `json:"naive_p50_ms"`
	NaiveP99ms  float64 `json:"naive_p99_ms"`
}

// ProofsResult is filled by the proofs scenario.
type ProofsResult struct {
	EngineRedundancy float64 `json:"engine_redundancy"`
	NaiveRedundancy  float64 `json:"naive_redundancy"`
}

func lag(quick bool) (*LagResult, error)       { return nil, errors.New("not yet") }
func proofs(quick bool) (*ProofsResult, error) { return nil, errors.New("not yet") }
