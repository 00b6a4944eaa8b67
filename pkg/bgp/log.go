package bgp

import (
	"context"
	"log/slog"
)

// gobgpLogger is the logger given to GoBGP: its warnings and errors only
// (its info logs repeat what the speaker logs itself, its debug logs are
// per message).
func gobgpLogger(l *slog.Logger) *slog.Logger {
	return slog.New(minLevel{l.With("component", "gobgp").Handler(), slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
