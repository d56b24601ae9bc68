//go:build race

package readmetest

const raceEnabled = true
