// What the server tells the page about itself (GET /dashboard/config).

export interface Principal {
  subject: string;
  admin: boolean;
}

export interface DashboardConfig {
  version: string;
  auth: boolean;
  principal: Principal | null;
  features: string[];
  collections: string[];
  tweets: string | null;
  conversations: string | null;
  items: string | null;
}

export interface View {
  /** The view became visible. */
  show(): void;
  /** The view was hidden: stop polling. */
  hide(): void;
  /** The token or server config changed: reconnect and reload. */
  reset(config: DashboardConfig): void;
}

export interface SearchHit {
  id: string;
  score: number | null;
  text: string | null;
  ts: string | null;
  user: string | null;
  payload: Record<string, unknown>;
  sentiment: { label: string; score: number } | null;
  /** Conversations only: the insights analysis once stored (null while pending). */
  analysis?: Analysis | null;
}

/** What live views get of a conversation's analysis (WS `analysis` pushes, search hits). */
export interface Analysis {
  sentiment: string;
  sentiment_score: number;
  cluster: string | null;
  cluster_id: number | null;
  confidence: number;
  analyzer: string;
}

export interface SearchOut {
  results: SearchHit[];
  took_ms: number;
}
