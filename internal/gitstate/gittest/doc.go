// Package gittest builds git repositories in every state gitstate must carry
// (edge cases, in steps) and compares a restored repository with its original.
package gittest
