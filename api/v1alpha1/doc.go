// Package v1alpha1 contains the AgenticSession API (group tether.dev): the spec a
// user writes to ask for a long-running agent session, and the status the
// operator reports about it.
//
// +kubebuilder:object:generate=true
// +groupName=tether.dev
package v1alpha1
