// Browser end-to-end, chat: two users in two Chromium contexts against the real server binary chat
// both ways (ticks, receipts, typing, unread badges), page history on scroll-up, reload and keep
// history, and get messages typed while the server was down delivered after it restarts.
// Run: node --test tests/e2e/   (needs the binary: see support/harness.mjs for MESCON_BIN)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MesconServer, launchBrowser, newUserPage, uiLogin, tid, eventually, makePng, shot, DESKTOP, addContact, assertText, assertValue, assertPresence } from './support/harness.mjs';

const ALICE = '+12015550101';
const BOB = '+12015550102';
const CAROL = '+12015550103';

let server, browser, alice, bob, aliceId, bobId;

before(async () => {
  server = await MesconServer.start();
  browser = await launchBrowser();
  alice = await newUserPage(browser, server, DESKTOP);
  bob = await newUserPage(browser, server, DESKTOP);
  await uiLogin(alice, server, ALICE);
  await uiLogin(bob, server, BOB);
  aliceId = await alice.locator(tid('nav-profile')).getAttribute('data-user-id');
  bobId = await bob.locator(tid('nav-profile')).getAttribute('data-user-id');
  await addContact(alice, BOB, 'Bob Builder');
  await addContact(bob, ALICE, 'Alice');
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const messages = (page) => page.locator(tid('message'));
const lastMessage = (page) => messages(page).last();

test('chat both ways: ticks, receipts, typing, unread badges, text stays text', async () => {
  // Bob waits on his chat list; Alice opens the chat from her contacts.
  await bob.locator(tid('nav-chats')).click();
  await alice.locator(`${tid('contact-item')}[data-user-id="${bobId}"] ${tid('contact-message')}`).click();
  const input = alice.locator(tid('composer-input'));
  await input.fill('Hi Bob! <b>not bold</b>');
  await input.press('Enter');
  await assertText(lastMessage(alice), /Hi Bob!/);
  await eventually(async () => ['sent', 'delivered'].includes(await lastMessage(alice).getAttribute('data-status')), { message: 'message sent (ack)' });
  assert.match(await lastMessage(alice).getAttribute('data-seq'), /^\d+$/);

  // Bob gets a chat row with an unread badge and a preview, without opening anything.
  const row = bob.locator(`${tid('chat-item')}[data-peer-id="${aliceId}"]`);
  await row.waitFor();
  await assertText(row.locator(tid('unread-badge')), '1');
  await assertText(row, /Alice/); // his contact name for her
  await assertText(row, /Hi Bob!/);
  // The tab title carries the unread count.
  await eventually(async () => (await bob.title()).startsWith('(1)'), { message: 'title count' });
  await eventually(async () => (await lastMessage(alice).getAttribute('data-status')) === 'delivered', { message: 'delivered tick' });
  await shot(bob, 'desktop-chats-unread');

  // Typing indicator
  await input.pressSequentially('typing…', { delay: 20 });
  await row.click();
  await bob.locator(tid('typing-indicator')).waitFor({ state: 'visible', timeout: 5000 });
  await input.fill('');

  // Bob opens the chat: the message is text (no <b> element), Alice sees it read (blue ticks).
  const got = bob.locator(tid('message')).filter({ hasText: 'Hi Bob!' });
  await got.waitFor();
  assert.equal(await got.locator('b').count(), 0);
  assert.match(await got.textContent(), /<b>not bold<\/b>/);
  await eventually(async () => (await lastMessage(alice).getAttribute('data-status')) === 'read', { message: 'read receipt' });
  assert.equal(await row.locator(tid('unread-badge')).count(), 0);

  // Reply with the send button.
  await bob.locator(tid('composer-input')).fill('Hello Alice 👋');
  await bob.locator(tid('composer-send')).click();
  await alice.locator(tid('message')).filter({ hasText: 'Hello Alice 👋' }).waitFor();
  await eventually(async () => (await lastMessage(bob).getAttribute('data-status')) === 'read', { message: 'Bob sees his reply read' });

  // Multi-line (Shift+Enter) stays one message.
  await input.fill('line one');
  await input.press('Shift+Enter');
  await input.pressSequentially('line two');
  await input.press('Enter');
  await bob.locator(tid('message')).filter({ hasText: 'line two' }).waitFor();
  assert.match(await bob.locator(tid('message')).filter({ hasText: 'line two' }).innerText(), /line one\nline two/);
  await shot(alice, 'desktop-conversation');
  assert.deepEqual(alice.problems, []);
  assert.deepEqual(bob.problems, []);
});

test('history paging and unread count from a third user', async () => {
  const carol = await server.apiLogin(CAROL);
  await carol.call('PATCH', '/api/me', { display_name: 'Carol' });
  for (let i = 1; i <= 70; i++) {
    await carol.call('POST', `/api/conversations/with/${aliceId}/messages`, { client_id: `carol-${i}`, body: `Carol #${i}` });
  }
  const row = alice.locator(`${tid('chat-item')}[data-peer-id="${carol.user.id}"]`);
  await alice.locator(tid('nav-chats')).click();
  await row.waitFor();
  await assertText(row.locator(tid('unread-badge')), '70');
  await assertText(row, /Carol/);
  await row.click();
  await alice.locator(tid('message')).filter({ hasText: 'Carol #70' }).waitFor();
  const firstPage = await alice.locator(tid('message')).count();
  assert.ok(firstPage >= 50 && firstPage < 70, `first page holds the latest messages only (${firstPage})`);
  // Scroll to the top: the older page loads and the oldest message appears.
  await eventually(async () => {
    await alice.locator(tid('message-list')).evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
    return (await alice.locator(tid('message')).count()) === 70;
  }, { message: 'older page loaded on scroll-up', timeout: 10_000, interval: 300 });
  await alice.locator(tid('message')).filter({ hasText: 'Carol #1' }).first().waitFor();
  await eventually(async () => (await row.locator(tid('unread-badge')).count()) === 0, { message: 'badge cleared after reading' });
});

test('a blocked recipient: the message fails with a reason, retry works after unblocking', async () => {
  // Bob blocks Alice from the chat menu.
  await bob.locator(`${tid('chat-item')}[data-peer-id="${aliceId}"]`).click();
  await bob.getByRole('button', { name: 'Chat options' }).click();
  await bob.getByRole('menuitem', { name: 'Block' }).click();
  await bob.locator(tid('confirm-ok')).click();
  await assertPresence(bob, /Blocked/);
  await alice.locator(`${tid('chat-item')}[data-peer-id="${bobId}"]`).click();
  await alice.locator(tid('composer-input')).fill('are you there?');
  await alice.locator(tid('composer-input')).press('Enter');
  const failed = alice.locator(`${tid('message')}[data-status="failed"]`);
  await failed.waitFor({ timeout: 15_000 });
  await shot(alice, 'desktop-message-failed');
  // Bob unblocks in settings; Alice retries the same message (same client_id) and it goes through.
  await bob.locator(tid('nav-settings')).click();
  await bob.locator(`${tid('blocked-item')}[data-user-id="${aliceId}"] ${tid('unblock')}`).click();
  await eventually(async () => (await bob.locator(tid('blocked-item')).count()) === 0, { message: 'unblocked' });
  await alice.locator(tid('message-retry')).click();
  await bob.locator(tid('message')).filter({ hasText: 'are you there?' }).waitFor({ timeout: 15_000 });
  assert.equal(await alice.locator(`${tid('message')}[data-status="failed"]`).count(), 0);
  await bob.locator(tid('nav-chats')).click();
});

test('reload restores the session (refresh cookie) and the history', async () => {
  await alice.reload();
  await alice.locator(tid('nav-chats')).waitFor({ timeout: 15_000 });
  assert.equal(await alice.locator(tid('login-phone')).count(), 0, 'no login screen after reload');
  // No token in web storage: the access token lives in memory only.
  const stored = await alice.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.doesNotMatch(stored, /eyJ|access_token|refresh_token/);
  await alice.locator(`${tid('chat-item')}[data-peer-id="${bobId}"]`).click();
  await alice.locator(tid('message')).filter({ hasText: 'Hi Bob!' }).waitFor();
  await alice.locator(tid('message')).filter({ hasText: 'Hello Alice 👋' }).waitFor();
  assert.equal(await alice.locator(tid('message')).filter({ hasText: 'Hi Bob!' }).getAttribute('data-status'), 'read');
  // Bob is connected and in Alice's contacts: his presence shows.
  await assertPresence(alice, /online/);
});

test('messages typed while the server is down are delivered after it restarts', async () => {
  await bob.locator(`${tid('chat-item')}[data-peer-id="${aliceId}"]`).click();
  await server.stop();
  for (const page of [alice, bob]) await page.locator(tid('connection-banner')).waitFor({ state: 'visible', timeout: 10_000 });
  await shot(alice, 'desktop-offline-banner');
  const input = alice.locator(tid('composer-input'));
  await input.fill('written offline 1');
  await input.press('Enter');
  await input.fill('written offline 2');
  await input.press('Enter');
  await bob.locator(tid('composer-input')).fill('bob offline reply');
  await bob.locator(tid('composer-input')).press('Enter');
  const pending = alice.locator(`${tid('message')}[data-status="pending"]`);
  await eventually(async () => (await pending.count()) === 2, { message: 'two pending messages' });
  await shot(alice, 'desktop-offline-pending');
  // The outbox is persisted (text + client_id, no tokens), so closing the tab loses nothing.
  const outbox = await alice.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('mescon.outbox.')).map((k) => localStorage.getItem(k)).join(''));
  assert.match(outbox, /written offline 2/);
  assert.doesNotMatch(outbox, /eyJ|token/i);
  const aliceCtx = alice.context();
  await alice.close();

  await server.restart();
  // Bob's open page reconnects by itself, resyncs and flushes his outbox.
  await alice_reopen();
  async function alice_reopen() {
    alice = await aliceCtx.newPage();
    alice.problems = [];
    await alice.goto(server.url);
    await alice.locator(tid('nav-chats')).waitFor({ timeout: 20_000 });
  }
  for (const text of ['written offline 1', 'written offline 2']) {
    await bob.locator(tid('message')).filter({ hasText: text }).waitFor({ timeout: 20_000 });
  }
  await alice.locator(`${tid('chat-item')}[data-peer-id="${bobId}"]`).click();
  await alice.locator(tid('message')).filter({ hasText: 'bob offline reply' }).waitFor({ timeout: 20_000 });
  await eventually(async () => {
    const statuses = await alice.locator(tid('message')).filter({ hasText: 'written offline' }).evaluateAll((els) => els.map((e) => e.dataset.status));
    return statuses.length === 2 && statuses.every((s) => ['sent', 'delivered', 'read'].includes(s));
  }, { message: 'offline messages acknowledged', timeout: 15_000 });
  await eventually(async () => !(await bob.locator(tid('connection-banner')).isVisible()), { message: 'banner hidden after reconnect' });
  await eventually(async () => (await bob.locator(`${tid('message')}[data-status="pending"]`).count()) === 0, { message: 'bob outbox empty' });
  // Exactly once each, in order, on Bob's side.
  const bobTexts = await bob.locator(tid('message')).allTextContents();
  assert.equal(bobTexts.filter((t) => t.includes('written offline 1')).length, 1);
  assert.equal(bobTexts.filter((t) => t.includes('written offline 2')).length, 1);
  assert.ok(bobTexts.findIndex((t) => t.includes('written offline 1')) < bobTexts.findIndex((t) => t.includes('written offline 2')));
});

test('presence: a peer that goes away shows "last seen"', async () => {
  await alice.locator(`${tid('chat-item')}[data-peer-id="${bobId}"]`).click();
  await assertPresence(alice, /online/);
  await bob.context().close();
  await assertPresence(alice, /last seen (today|yesterday)/i, 15_000);
});
