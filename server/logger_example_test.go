package server_test

import (
	"net/http"
	"net/http/httptest"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/remuda/remuda/server"
)

// A handler logs through the server's logger, with the request's id. Run
// by a Remuda server, the line goes to the server's log; driven by
// httptest, as here, Logger is zap's global logger, which this example
// points at stdout (a test would use zaptest.NewLogger(t)).
func ExampleLogger() {
	app := server.NewApp()
	app.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		server.Logger(r).Info("order shown", zap.String("order", r.PathValue("id")))
	})

	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg", LevelKey: "level", EncodeLevel: zapcore.LowercaseLevelEncoder})
	defer zap.ReplaceGlobals(zap.New(zapcore.NewCore(enc, zapcore.Lock(os.Stdout), zap.InfoLevel)))()
	app.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/orders/42", nil))
	// Output: {"level":"info","msg":"order shown","order":"42"}
}
