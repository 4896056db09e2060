import { describe, expect, it } from "vitest";
import { capabilitiesOf, cosine, isEmbeddingModel } from "./embeddings";

describe("cosine", () => {
  it("is 1 for the same direction, -1 for the opposite, 0 for orthogonal", () => {
    expect(cosine([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(cosine([1, 0], [-3, 0])).toBeCloseTo(-1, 12);
    expect(cosine([1, 0], [0, 5])).toBe(0);
  });

  it("is 0 for an all-zero vector and refuses vectors of different lengths", () => {
    expect(cosine([0, 0], [1, 1])).toBe(0);
    expect(() => cosine([1], [1, 2])).toThrow("different lengths");
  });
});

describe("capabilities", () => {
  it("reads what /v1/models reports, a chat model when absent", () => {
    expect(isEmbeddingModel({ capabilities: ["embeddings"] })).toBe(true);
    expect(isEmbeddingModel({ capabilities: ["chat", "completions"] })).toBe(false);
    expect(capabilitiesOf({})).toEqual(["chat", "completions"]);
  });
});
