/** Marketplace: search and filter templates, preview, "Use" (to the submit form), "Open as notebook". */
import * as React from 'react';

import { ApiError, MarketplaceItem, OpenXPUClient } from './api';
import { ErrorBox, NotAvailable } from './util';

export interface IMarketplaceProps {
  client: OpenXPUClient;
  onUse: (yamlText: string) => void;
  onOpenNotebook: (item: MarketplaceItem) => Promise<void>;
}

export function MarketplaceView(props: IMarketplaceProps): JSX.Element {
  const { client } = props;
  const [keyword, setKeyword] = React.useState('');
  const [tag, setTag] = React.useState('');
  const [items, setItems] = React.useState<MarketplaceItem[] | null>(null);
  const [chosen, setChosen] = React.useState<MarketplaceItem | null>(null);
  const [error, setError] = React.useState<unknown>(null);
  const [missing, setMissing] = React.useState(false);

  React.useEffect(() => {
    let cancelled = false;
    const timer = setTimeout(async () => {
      try {
        const found = await client.listTemplates({ keyword: keyword.trim() || undefined, tag: tag || undefined });
        if (!cancelled) {
          setItems(found);
          setError(null);
        }
      } catch (e) {
        if (cancelled) {
          return;
        }
        if (e instanceof ApiError && e.notAvailable) {
          setMissing(true);
        } else {
          setError(e);
        }
      }
    }, 250);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [keyword, tag]);

  const choose = async (item: MarketplaceItem) => {
    setChosen(item);
    try {
      setChosen(await client.getTemplate(item.id));
    } catch (e) {
      setError(e);
    }
  };

  if (missing) {
    return (
      <div className="oxp-view oxp-marketplace">
        <NotAvailable what="The marketplace" route="GET openxpu/api/v2/marketplace/items" />
      </div>
    );
  }
  const tags = Array.from(new Set((items ?? []).flatMap(i => i.tags ?? []))).sort();
  return (
    <div className="oxp-view oxp-marketplace">
      <form className="oxp-filters" onSubmit={e => e.preventDefault()} aria-label="Template filters">
        <label>
          Search
          <input value={keyword} onChange={e => setKeyword(e.target.value)} aria-label="Search templates" />
        </label>
        <label>
          Tag
          <select value={tag} onChange={e => setTag(e.target.value)} aria-label="Filter templates by tag">
            <option value="">any</option>
            {tags.map(t => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
      </form>
      <ErrorBox error={error} />
      <ul className="oxp-cards" aria-label="Templates">
        {(items ?? []).map(item => (
          <li key={item.id} className={`oxp-card${chosen?.id === item.id ? ' oxp-selected' : ''}`}>
            <button className="oxp-link" onClick={() => choose(item)} aria-label={`Preview ${item.name}`}>
              <strong>{item.name}</strong>
            </button>
            <div className="oxp-card-meta">
              {item.author ? `by ${item.author}` : ''} {item.useNumber !== undefined ? `· used ${item.useNumber}×` : ''}
            </div>
            <div>{item.summary ?? ''}</div>
            <div className="oxp-tags">
              {(item.tags ?? []).map(t => (
                <span key={t} className="oxp-tag">
                  {t}
                </span>
              ))}
            </div>
          </li>
        ))}
        {items && items.length === 0 ? <li className="oxp-empty">No templates match.</li> : null}
      </ul>
      {chosen ? (
        <section className="oxp-preview" aria-label={`Template ${chosen.name}`}>
          <h3>{chosen.name}</h3>
          <div className="oxp-toolbar">
            <button
              className="jp-mod-styled jp-mod-accept"
              disabled={!chosen.protocol}
              onClick={() => chosen.protocol && props.onUse(chosen.protocol)}
            >
              Use
            </button>
            <button
              className="jp-mod-styled"
              disabled={!chosen.notebook}
              title={chosen.notebook ? '' : 'This template has no notebook'}
              onClick={() => props.onOpenNotebook(chosen).catch(setError)}
            >
              Open as notebook
            </button>
          </div>
          {chosen.description ? <div className="oxp-description">{chosen.description}</div> : null}
          {chosen.protocol ? <pre className="oxp-yaml-preview">{chosen.protocol}</pre> : null}
        </section>
      ) : null}
    </div>
  );
}
