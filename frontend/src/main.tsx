import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { readConfig } from "./lib/config";
import "./styles.css";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App config={readConfig(window.LLMSERVER_CONFIG)} />
  </StrictMode>,
);
