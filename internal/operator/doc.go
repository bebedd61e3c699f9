// Package operator turns AgenticSession objects into session pods, notices a dead
// runner at container level in every phase, and brings the session back resumed:
// pod builder, termination classifier, recovery policy and the reconciler.
package operator
